"""`spoofrl data`: corpus importers (`import`), the built-in benchmark (`synth`), real speech from Debian
packages (`fetch`) and frequency-time rationales written from measured evidence (`rationales`)."""
from spoofrl.cli import cmd_data_fetch, cmd_data_import, cmd_data_rationales, cmd_data_synth


def register(sub):
    p = sub.add_parser("data", help="import public corpora into manifests; generate the built-in benchmark; "
                                    "fetch real speech; write FT rationales",
                       description="Data preparation. import, synth and fetch write the spoofrl manifest format "
                                   "(CSV path,label,attack,source,condition,subset); rationales writes JSONL.")
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data_sub.required = True
    cmd_data_import.register(data_sub)
    cmd_data_synth.register(data_sub)
    cmd_data_fetch.register(data_sub)
    cmd_data_rationales.register(data_sub)
