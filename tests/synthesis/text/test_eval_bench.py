from __future__ import annotations

import subprocess
import sys

from synthesis.text import bench
from synthesis.text.eval import canonical_tn, main
from tests.synthesis.text.samples import REPO


def test_canonicalization_accepts_equivalent_readings_only() -> None:
    assert canonical_tn("两千元，") == canonical_tn("二千元")
    assert canonical_tn("三十号") == canonical_tn("三十日")
    assert canonical_tn("三点零四分零五秒") == canonical_tn("三点四分五秒")
    assert canonical_tn("幺零零八六") == canonical_tn("一零零八六")
    assert canonical_tn("十点零分") != canonical_tn("十点分")
    assert canonical_tn("三十号楼") != canonical_tn("三十楼")
    assert canonical_tn("一百") != canonical_tn("一千")


def test_eval_without_data_exits_2(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("VOICE_NOTIFY_EVAL_DIR", str(tmp_path / "missing"))
    assert main(["--no-wetext"]) == 2
    assert "VOICE_NOTIFY_EVAL_DIR" in capsys.readouterr().err


def test_bench_notices_are_deterministic_and_compose(composer) -> None:
    notices = bench.make_notices(300)
    assert notices == bench.make_notices(300)
    assert {locale for _, locale, _, _ in notices} == {"cmn", "yue", "en"}
    assert bench.run(composer, notices, lambda: None) > 0
    for notice in notices:
        composer.compose(*notice)


def test_text_frontend_imports_without_torch() -> None:
    code = (
        "import sys, synthesis.text, synthesis.text.eval, synthesis.text.bench;"
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
