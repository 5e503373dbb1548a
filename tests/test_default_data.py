"""The shipped default data set is what datasets/default_traffic.py generates, it is as varied as a
real site's traffic (a bundle trained on it knows an ordinary site's access log), and --default-rows
takes a seeded sample of it."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest

from conftest import train_cmd
from threat_ensemble.data.default_data import DEFAULT_ROWS, default_frame, default_table
from threat_ensemble.errors import InputError
from threat_ensemble.http.features import featurize_text


def test_the_shipped_file_is_what_the_generator_makes_now() -> None:
    """Regenerate with ``python datasets/default_traffic.py --write-default`` after changing the
    generator or the featurizer."""
    from default_traffic import generate_default_traffic

    pd.testing.assert_frame_equal(default_frame(), generate_default_traffic(DEFAULT_ROWS, seed=42))


# An ordinary small site's traffic, written here rather than by the generator: another site's paths,
# file names and browsers, so the test asks whether the default data covers a real site, not itself.
STATIC_TYPES = ("png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "css", "js", "mjs", "map", "woff", "woff2", "ttf",
                "eot", "pdf", "txt", "xml", "json", "mp4")  # fmt: skip
SITE_FILES = (
    "/css/style.css", "/css/style.min.css?ver=6.4.3", "/js/main.js", "/js/vendor.min.js", "/js/modules/menu.mjs",
    "/js/main.js.map", "/img/logo.png", "/img/banner.jpg", "/images/gallery/photo-3.jpeg", "/img/icons/mail.svg",
    "/img/loader.gif", "/img/team.webp", "/favicon.ico", "/fonts/roboto-v30.woff2", "/fonts/roboto-v30.woff",
    "/fonts/fa-solid.ttf", "/fonts/fa-solid.eot", "/docs/brochure-2025.pdf", "/robots.txt", "/sitemap.xml",
    "/data/locations.json", "/video/intro.mp4", "/uploads/2025/09/cover-image.png",
)  # fmt: skip
SITE_PAGES = ("/", "/about/", "/blog/", "/blog/2025/10/winter-opening-hours/", "/contact", "/services/repairs",
              "/products?page=2", "/search?q=blue+shoes", "/?utm_source=newsletter&utm_medium=email")  # fmt: skip
SITE_CLIENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 13; SM-G991B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Safari/537.36 Edg/120.0.0.0",
)


def plain_site_log(visits: int = 60, seed: int = 3) -> str:
    """A combined access log of an ordinary small site: each visit a page or two and their static
    files, by a handful of browsers, with 304s for cached files and a crawler reading robots.txt."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-11-03 08:00:00")
    lines = []
    for visit in range(visits):
        client = f"203.0.113.{visit % 50 + 10}" if visit % 3 else f"198.51.100.{visit + 2}"
        agent = SITE_CLIENTS[visit % len(SITE_CLIENTS)]
        t = start + pd.Timedelta(minutes=int(rng.integers(0, 600)))
        referer = "https://www.google.com/"
        for page in rng.choice(len(SITE_PAGES), int(rng.integers(1, 3)), replace=False):
            requests = [(SITE_PAGES[page], 200, int(rng.integers(4000, 30000)), referer)]
            files = rng.choice(len(SITE_FILES), int(rng.integers(4, 12)), replace=False)
            page_url = "https://www.example.com" + SITE_PAGES[page]
            for f in files:
                status = 304 if rng.random() < 0.3 else 200
                size = 0 if status == 304 else int(rng.integers(300, 200000))
                requests.append((SITE_FILES[f], status, size, page_url))
            for i, (target, status, size, ref) in enumerate(requests):
                stamp = (t + pd.Timedelta(seconds=i)).strftime("%d/%b/%Y:%H:%M:%S +0000")
                lines.append(f'{client} - - [{stamp}] "GET {target} HTTP/1.1" {status} {size} "{ref}" "{agent}"')
            referer, t = page_url, t + pd.Timedelta(seconds=int(rng.integers(20, 200)))
    bot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    for i, target in enumerate(("/robots.txt", "/sitemap.xml", *SITE_PAGES[:5])):
        stamp = (start + pd.Timedelta(minutes=700, seconds=5 * i)).strftime("%d/%b/%Y:%H:%M:%S +0000")
        lines.append(f'66.249.66.{i + 1} - - [{stamp}] "GET {target} HTTP/1.1" 200 {3000 + i} "-" "{bot}"')
    return "\n".join(lines) + "\n"


def test_normal_traffic_has_a_real_sites_static_types_methods_and_statuses() -> None:
    normal = default_frame().query("label == 0")
    assert set(STATIC_TYPES) <= set(normal["file_extension"])
    assert {"GET", "POST", "HEAD", "OPTIONS"} <= set(normal["method"])
    logged = normal[normal["status_code"] >= 0]  # the access-log part
    assert {200, 204, 206, 301, 304, 404} <= set(logged["status_code"])
    assert set(STATIC_TYPES) <= set(logged["file_extension"])


@pytest.mark.slow  # it scores with the session's trained default bundle (a train.py run)
def test_a_plain_site_log_is_known_to_the_default_bundle(default_bundle: dict) -> None:
    """Issue 35: an ordinary combined access log met a bundle that had never seen `png` (128 of its
    146 false positives were `GET /img/logo.png`). Now its file types are training categories and
    few of its requests are flagged."""
    from threat_ensemble.models.ensemble import load_ensemble

    log = plain_site_log()
    features = featurize_text(log, "combined", source="site.log")
    assert set(STATIC_TYPES) <= set(features["file_extension"])
    ensemble = load_ensemble(default_bundle["bundle"])
    _, unseen = ensemble.preprocessing.encoder.transform(features, "site.log")
    assert unseen.total <= 0.01 * len(features), unseen.message("site.log")
    scores = ensemble.score(features, "site.log")  # raw rows: the ensemble checks and encodes them
    flagged = np.asarray(scores["ensemble"]) >= 0.5
    assert flagged.mean() <= 0.02, [line for line, f in zip(log.splitlines(), flagged, strict=True) if f][:5]


def test_default_rows_is_a_seeded_sample_of_the_data_set() -> None:
    whole = default_table()
    assert len(whole.y) == DEFAULT_ROWS and set(np.unique(whole.y)) == {0, 1}
    part, again, other = default_table(3000, 42), default_table(3000, 42), default_table(3000, 7)
    assert len(part.y) == 3000 and 0 < part.y.mean() < 1
    pd.testing.assert_frame_equal(part.features, again.features)
    assert not part.features.equals(other.features)
    assert list(part.features.columns) == list(whole.features.columns)


def test_more_rows_than_the_data_set_has_is_refused_by_name() -> None:
    expected = rf"--default-rows {DEFAULT_ROWS + 1}: the built-in data set has {DEFAULT_ROWS} rows"
    with pytest.raises(InputError, match=expected):
        default_table(DEFAULT_ROWS + 1)
    done = subprocess.run(train_cmd("--default-rows", str(DEFAULT_ROWS + 1)), capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [f"error: {expected}; give --data for more"]
