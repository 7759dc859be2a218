"""`genixer`: the command line of the library (installed with the package).

    genixer collect FORMAT FILE... --images DIR --out OUT.parquet
    genixer export llava|shikra|parquet IN.parquet --out PATH [--images-root DIR]
"""

from __future__ import annotations

import argparse
import sys

from genixer.images import MAX_PIXELS


def _collect(args) -> int:
    from genixer.sources import collect

    report = collect(args.format, args.files, args.images, args.out, max_pixels=args.max_pixels,
                     verify_images=not args.no_verify_images, progress=not args.no_progress)
    print("\n".join(report.lines()))
    return 0


def main(argv: list[str] | None = None) -> int:
    from genixer.sources import FORMATS, SourceFormatError, describe_formats

    parser = argparse.ArgumentParser(prog="genixer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="read a published data set format into the sample schema (parquet)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Read FILE... as FORMAT into parquet in the one sample schema. Records that cannot "
                                   "become samples go to OUT.quarantine.parquet with their reason; missing images are "
                                   "listed in OUT.missing_images.txt.",
                       epilog="formats, the files each takes (in this order), and what --images is:\n\n" + describe_formats())
    c.add_argument("format", choices=sorted(FORMATS), metavar="FORMAT", help="one of: " + ", ".join(FORMATS))
    c.add_argument("files", nargs="+", metavar="FILE", help="the format's files, in the order listed below")
    c.add_argument("--images", help="the folder the release resolves its image paths from (see below)")
    c.add_argument("--out", required=True, help="output parquet file")
    c.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help=f"refuse images above this many pixels (default {MAX_PIXELS:,})")
    c.add_argument("--no-verify-images", action="store_true", help="read image headers only (faster; truncated files are then caught later)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(run=_collect)
    from genixer import exports
    exports.add_cli(sub)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (SourceFormatError, FileNotFoundError) as e:
        print(f"genixer {args.command}: error: {' '.join(str(e).splitlines())}", file=sys.stderr)  # one line
        return 2


if __name__ == "__main__":
    sys.exit(main())
