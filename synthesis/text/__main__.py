"""Command-line tools over the text frontend; UTF-8 lines in, one line out per line in.

    python -m synthesis.text normalize [--money-style yuan-jiao-fen|decimal]
    python -m synthesis.text pinyin [--name]
    python -m synthesis.text markup --engine cosyvoice3|espeak|ssml [--lang cmn|yue|en]

A line that cannot be processed prints ``ERROR <reason_code>`` instead of stopping the run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable

from synthesis.text.errors import NoticeTextError
from synthesis.text.lexicon import Lexicon
from synthesis.text.normalize import normalize_text
from synthesis.text.normalize.english import normalize_en
from synthesis.text.normalize.money import MONEY_STYLES
from synthesis.text.paths import INCLUDE_DIR
from synthesis.text.pinyin import HAN_RUN, NameReader, WordAnnotator, run_marked
from synthesis.text.readers import check_characters
from synthesis.text.split import split_segments


def _checked(line: str) -> str:
    text = line.strip()
    if not text:
        raise NoticeTextError("empty_input", "empty line")
    check_characters("line", text)
    return text


def _normalizer(args: argparse.Namespace) -> Callable[[str], str]:
    return lambda line: normalize_text(_checked(line), args.money_style)


def _pinyin(args: argparse.Namespace, lexicon: Lexicon) -> Callable[[str], str]:
    names = NameReader(lexicon)
    words = WordAnnotator(lexicon)

    def name(line: str) -> str:
        text = line.strip()
        if not text:
            raise NoticeTextError("empty_name", "empty line")
        check_characters("name", text)
        if not HAN_RUN.fullmatch(text):
            raise NoticeTextError("invalid_name", "a name is Han characters only")
        return " ".join(names.read(text))

    def text(line: str) -> str:
        source = normalize_text(_checked(line))
        syllables: list[str] = []
        spans = {start: (end, reading) for start, end, reading in words.spans(source)}
        index = 0
        while index < len(source):
            if index in spans:
                end, reading = spans[index]
                syllables.extend(reading.split())
                index = end
            elif HAN_RUN.match(source, index):
                run = HAN_RUN.match(source, index).group()
                stop = next((s for s in spans if index < s < index + len(run)), index + len(run))
                syllables.extend(run_marked(source[index:stop]))
                index = stop
            else:
                if not source[index].isspace():
                    syllables.append(source[index])
                index += 1
        return " ".join(syllables)

    return name if args.name else text


def _markup(args: argparse.Namespace, lexicon: Lexicon) -> Callable[[str], str]:
    from synthesis.text.render.cosyvoice3 import render_cosyvoice3
    from synthesis.text.render.espeak import render_espeak
    from synthesis.text.render.ssml import render_ssml_document

    words = WordAnnotator(lexicon)

    def markup(line: str) -> str:
        source = _checked(line)
        if args.lang == "en":
            text, spans = normalize_en(source), ()
        else:
            text = normalize_text(source)
            spans = words.spans(text) if args.lang == "cmn" else ()
        segments = split_segments(text, spans, (), args.lang)
        if args.engine == "ssml":
            return render_ssml_document(segments)
        if args.engine == "cosyvoice3":
            return "".join(render_cosyvoice3(segment) for segment in segments)
        rendered = [render_espeak(segment) for segment in segments]
        return rendered[0][0] + "\t" + " ".join(markup for _, markup in rendered)

    return markup


def run(lines: Iterable[str], convert: Callable[[str], str], out) -> int:
    """Convert each line; returns how many lines failed."""
    failures = 0
    for line in lines:
        try:
            result = convert(line.rstrip("\n"))
        except NoticeTextError as error:
            failures += 1
            result = f"ERROR {error.reason_code}"
        out.write(result.replace("\n", " ") + "\n")
    return failures


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m synthesis.text", description=__doc__.split("\n")[0]
    )
    commands = root.add_subparsers(dest="command", required=True)
    normalize = commands.add_parser("normalize", help="numbers, dates, money ... as words")
    normalize.add_argument("--money-style", choices=MONEY_STYLES, default="yuan-jiao-fen")
    pinyin = commands.add_parser("pinyin", help="tone-marked pinyin (surname-aware with --name)")
    pinyin.add_argument("--name", action="store_true", help="each line is a person name")
    markup = commands.add_parser("markup", help="engine input for each line")
    markup.add_argument("--engine", choices=("cosyvoice3", "espeak", "ssml"), required=True)
    markup.add_argument("--lang", choices=("cmn", "yue", "en"), default="cmn")
    for command in (pinyin, markup):
        command.add_argument("--include-dir", default=str(INCLUDE_DIR), help="include/ folder")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sys.stdin.reconfigure(encoding="utf-8", errors="replace")
    sys.stdout.reconfigure(encoding="utf-8")
    if args.command == "normalize":
        convert = _normalizer(args)
    else:
        from pathlib import Path

        lexicon = Lexicon.load(Path(args.include_dir) / "lexicons")
        convert = _pinyin(args, lexicon) if args.command == "pinyin" else _markup(args, lexicon)
    run(sys.stdin, convert, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
