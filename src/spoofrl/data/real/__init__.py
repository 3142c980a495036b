"""Real human speech (bona fide) from Debian packages: the catalogue (`SOURCES`) and `fetch_real_speech`.

    from spoofrl.data.real import SOURCES, fetch_real_speech
    report = fetch_real_speech("asterisk-en,fillets-cs")        # apt-get download, unpack, check, manifest
    report = fetch_real_speech("all", debs="/srv/debs")         # offline, from .deb files already there
    print("\\n".join(report.summary()))                        # report.manifest: CACHE/manifest.csv

See docs/data.md ("Real human speech (bona fide) from Debian packages").
"""
from spoofrl.data.real.catalogue import SOURCES, Source, resolve_sources
from spoofrl.data.real.debian import FetchError
from spoofrl.data.real.fetch import FetchReport, SourceReport, default_cache, fetch_real_speech
from spoofrl.data.real.parsers import PARSERS, Clip

__all__ = ["SOURCES", "Source", "resolve_sources", "FetchError", "FetchReport", "SourceReport", "default_cache",
           "fetch_real_speech", "PARSERS", "Clip"]
