"""Paraphrase templates of the rationale writer: several ways to state each kind of evidence.

`TEMPLATES[(kind, direction)]` lists sentences with the fields `{band}` (a band phrase such as "above 4 kHz",
"between 2 and 3 kHz", "in the high-frequency region"), `{time}` ("near 1.21 s"), `{cutoff}` ("5.6 kHz"),
`{value}`, `{z}`, `{size}` (a discontinuity's signed dB), `{drop}` (a band limit's cliff in dB) and
`{level}` (the noise floor's distance below the speech, dB). A field may also start the sentence
(`{Band}`, `{Time}`: capitalised). Every sentence must read back, through `parse_claims`, as exactly one
claim of its kind and direction: the writer checks each one it writes, so a template that the parser
misreads fails loudly the first time it is drawn (tests draw them all).
"""
from __future__ import annotations

import numpy as np

from spoofrl.explain.vocabulary import HIGH_REGION_HZ

TEMPLATES: dict[tuple[str, str], list[str]] = {
    ("band_energy", "low"): [
        "The energy {band} is unusually low ({value} dB of the total, z = {z}).",
        "There is very little energy {band}, far less than in bona fide speech.",
        "Energy {band} is strongly attenuated compared with bona fide speech (z = {z}).",
        "{Band} the spectrum holds much less energy than it should (z = {z}).",
    ],
    ("band_energy", "high"): [
        "The energy {band} is unusually high ({value} dB of the total, z = {z}).",
        "There is excess energy {band}, more than bona fide speech carries (z = {z}).",
        "Energy {band} is elevated well above the bona fide range (z = {z}).",
    ],
    ("band_energy", "normal"): [
        "Energy {band} is within the range of bona fide speech.",
        "The balance of energy {band} is typical of bona fide speech.",
        "Energy {band} looks normal.",
    ],
    ("bandwidth", "low"): [
        "The bandwidth is unusually narrow: the spectrum fades out above {cutoff} (z = {z}).",
        "The usable bandwidth ends near {cutoff}, narrower than in bona fide speech.",
        "The signal's bandwidth is reduced, reaching only about {cutoff}.",
    ],
    ("bandwidth", "high"): [
        "The bandwidth is unusually wide, extending to {cutoff} (z = {z}).",
        "The signal has a wider bandwidth than bona fide speech, reaching {cutoff}.",
        "Bandwidth is broader than in bona fide speech, up to {cutoff}.",
    ],
    ("bandwidth", "normal"): [
        "The bandwidth is typical of bona fide speech, reaching about {cutoff}.",
        "The bandwidth is within the bona fide range.",
        "Bandwidth looks normal.",
    ],
    ("band_limit", "present"): [
        "The spectrum is cut off sharply above {cutoff}, like a codec's low-pass filter.",
        "A steep spectral cliff at {cutoff} shows the audio was band-limited.",
        "Above {cutoff} the spectrum drops by {drop} dB, a brick-wall cut-off.",
    ],
    ("flatness", "high"): [
        "The spectrum {band} is unusually noise-like (spectral flatness {value} dB, z = {z}).",
        "Spectral flatness {band} is unusually high, as with noise excitation (z = {z}).",
        "The harmonic structure {band} is weak and smeared (z = {z}).",
    ],
    ("flatness", "low"): [
        "Spectral flatness {band} is unusually low (z = {z}).",
        "The harmonics {band} are unusually strong and clean (z = {z}).",
        "The spectrum {band} is more tonal than in bona fide speech (z = {z}).",
    ],
    ("flatness", "normal"): [
        "Spectral flatness {band} is within the bona fide range.",
        "The harmonic structure {band} is typical of bona fide speech.",
    ],
    ("hnr", "low"): [
        "The harmonics-to-noise ratio {band} is low ({value} dB, z = {z}): the voicing sounds breathy.",
        "Voiced frames {band} are breathy, with a reduced harmonics-to-noise ratio (z = {z}).",
        "HNR {band} falls below the bona fide range (z = {z}).",
    ],
    ("hnr", "high"): [
        "The harmonics-to-noise ratio {band} is unusually high (z = {z}): the voicing is too clean.",
        "HNR {band} is elevated above the bona fide range (z = {z}).",
        "Voiced speech {band} has an excess harmonics-to-noise ratio (z = {z}).",
    ],
    ("hnr", "normal"): [
        "The harmonics-to-noise ratio is within the range of bona fide speech.",
        "HNR is typical of bona fide voices.",
        "Voicing shows a normal harmonics-to-noise ratio.",
    ],
    ("phase_irregularity", "high"): [
        "The phase {band} is irregular from frame to frame (z = {z}).",
        "Phase irregularity {band} is unusually high, as if the phase were randomised (z = {z}).",
        "Frame-to-frame phase {band} is more erratic than in bona fide speech (z = {z}).",
    ],
    ("phase_irregularity", "low"): [
        "Phase irregularity {band} is unusually low (z = {z}).",
        "Phase irregularity {band} is lower than in bona fide speech (z = {z}).",
        "The phase {band} is suspiciously coherent from frame to frame (z = {z}).",
    ],
    ("phase_irregularity", "normal"): [
        "Phase behaviour {band} is typical of bona fide speech.",
        "The phase {band} evolves as in bona fide speech.",
    ],
    ("noise_floor", "low"): [
        "The pauses are unusually quiet: the noise floor lies {level} dB beneath the speech (z = {z}).",
        ("The silent segments are almost digitally silent, with a lower noise floor than bona fide recordings "
         "(z = {z})."),
        "The noise floor in the pauses is unusually low (z = {z}).",
    ],
    ("noise_floor", "high"): [
        "The noise floor in the pauses is unusually high (z = {z}).",
        "The pauses hold more background noise than bona fide recordings (z = {z}).",
        "Noise in the silent segments is elevated above the bona fide range (z = {z}).",
    ],
    ("noise_floor", "normal"): [
        "The noise floor in the pauses is within the range of bona fide recordings.",
        "The background noise in the pauses is typical of bona fide recordings.",
        "The pauses carry a natural noise floor.",
    ],
    ("f0_jitter", "low"): [
        "Cycle-to-cycle jitter is unusually low ({value} %, z = {z}).",
        "The glottal periods are too regular, with less jitter than bona fide voices (z = {z}).",
        "Jitter is lower than in bona fide speech, as in synthetic voicing (z = {z}).",
    ],
    ("f0_jitter", "high"): [
        "Jitter is unusually high ({value} %, z = {z}): the periods are erratic.",
        "Period-to-period jitter is elevated above the bona fide range (z = {z}).",
        "The voicing shows excess jitter (z = {z}).",
    ],
    ("f0_jitter", "normal"): [
        "Jitter is within the range of bona fide voices.",
        "Cycle-to-cycle jitter is typical of bona fide speech.",
        "Jitter looks natural.",
    ],
    ("f0_smoothness", "low"): [
        "The pitch contour is unusually smooth (z = {z}), as in over-smoothed synthetic speech.",
        "The F0 contour is flatter and steadier than in bona fide speech (z = {z}).",
        "Intonation is unnaturally monotonous (z = {z}).",
    ],
    ("f0_smoothness", "high"): [
        "The pitch contour is unusually jumpy (z = {z}).",
        "The F0 track is rough and erratic, rougher than in bona fide speech (z = {z}).",
        "Intonation moves in jagged, irregular steps (z = {z}).",
    ],
    ("f0_smoothness", "normal"): [
        "The pitch contour moves naturally, as in bona fide speech.",
        "Intonation is within the bona fide range.",
        "The F0 contour is typical of bona fide speech.",
    ],
    ("energy_discontinuity", "present"): [
        "An abrupt energy jump of {size} dB occurs {time}, as at a splice.",
        "{Time} the energy changes abruptly by {size} dB, a discontinuity bona fide speech rarely shows.",
        "A click-like discontinuity of {size} dB appears {time}.",
    ],
    ("energy_discontinuity", "normal"): [
        "The energy envelope evolves without abrupt jumps.",
        "There are no abrupt energy discontinuities.",
        "No clicks or splices show in the energy envelope.",
    ],
}

# Closing sentences, claim-free (they name no property, band, time or direction): the verdict's wording.
CLOSINGS: dict[tuple[str, bool], list[str]] = {
    ("spoof", True): ["These traces point to synthetic or processed speech.",
                      "Such artefacts are what a vocoder or a codec leaves behind.", ""],
    # a verdict the listed evidence does not suggest always says so (no empty closing): else a bona fide
    # rationale would list deviations and end on "bonafide" with nothing reconciling the two
    ("spoof", False): ["The measured properties alone do not reveal the manipulation.",
                       "What was measured does not give the manipulation away."],
    ("bonafide", True): ["Recordings vary, so this alone does not indicate spoofing.",
                         "Real recordings vary in this way too, so it is no sign of synthesis."],
    ("bonafide", False): ["Nothing here points to synthesis or processing.",
                          "No trace of a vocoder or a codec stands out.", ""],
}

# Ways to name the whole frequency range, for "normal" statements about every band.
WHOLE_RANGE = ["across the bands", "in every band", "across the spectrum"]


def hz_text(hz: float) -> str:
    """'250 Hz', '4 kHz', '5.6 kHz'."""
    if hz < 1000:
        return f"{hz:.0f} Hz"
    khz = round(hz / 1000, 1)
    return f"{khz:g} kHz"


def _number_only(hz: float) -> str:
    return hz_text(hz).split()[0]


def band_phrase(band: tuple[float, float], nyquist: float, rng: np.random.Generator) -> str:
    """A phrase locating `band` that the claim parser reads back as the same band."""
    lo, hi = band
    whole = lo <= 0 and hi >= nyquist
    if whole:
        return str(rng.choice(WHOLE_RANGE))
    if hi >= nyquist:
        options = [f"above {hz_text(lo)}", f"beyond {hz_text(lo)}", f"in the region above {hz_text(lo)}"]
        if lo == HIGH_REGION_HZ:
            options.append("in the high-frequency region")
        return str(rng.choice(options))
    if lo <= 0:
        return str(rng.choice([f"below {hz_text(hi)}", f"under {hz_text(hi)}"]))
    options = [f"between {hz_text(lo)} and {hz_text(hi)}", f"from {hz_text(lo)} to {hz_text(hi)}"]
    if (lo >= 1000) == (hi >= 1000):  # "4-5 kHz" needs one unit for both
        options.append(f"in the {_number_only(lo)}-{hz_text(hi)} band")
        options[0] = f"between {_number_only(lo)} and {hz_text(hi)}"
    return str(rng.choice(options))


def time_phrase(time_s: float, rng: np.random.Generator) -> str:
    return str(rng.choice([f"near {time_s:.2f} s", f"at about {time_s:.2f} s", f"around {time_s:.2f} s",
                           f"at {time_s:.2f} seconds"]))


def render(template: str, fields: dict[str, str]) -> str:
    """Fill a template; a capitalised field ({Band}) gets its value capitalised; double spaces collapse."""
    capitalised = {k[:1].upper() + k[1:]: v[:1].upper() + v[1:] for k, v in fields.items()}
    text = template.format(**fields, **capitalised)
    text = " ".join(text.split())
    return text[:1].upper() + text[1:]
