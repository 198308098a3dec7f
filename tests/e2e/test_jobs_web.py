"""The jobs dashboard (``damselfly-jobs web``) driven in a real browser: headless Chromium from
Debian through Selenium, against Damselfly, with a real ``damselfly-jobs work`` process.

A job that fails shows under Retries; "Retry now" in the page sends it back to its queue and it
runs; the dashboard's counters move (the page's own polling updates them); Quiet and Stop on
Busy reach the worker through ``<identity>-signals``; Kill, Dead, Add to queue, queue deletes and
bulk actions move jobs as Sidekiq does; job arguments are shown as text, never as markup; a POST
without the session's CSRF token is refused with 403.

Chromium missing: the module skips, unless CI is set (then it fails). Screenshots of each page go
to the test's tmp dir; with ``JOBS_WEB_SCREENSHOTS=docs/img`` they are also written there (how
docs/img/jobs-web-*.png were made).
"""

import http.cookiejar
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from test_jobs_interop import JOBS_BIN, Proc, _jobs_bin_or_skip, procs, url, wait_for  # noqa: F401 (procs: fixture)

REPO = pathlib.Path(__file__).resolve().parents[2]
IN_CI = bool(os.environ.get("CI"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _browser_or_skip():
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not path]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        msg = f"browser tests need {', '.join(missing)} (scripts/install-deps.sh installs them)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


def is_stale(element):
    """Whether `element` belongs to a page the browser has left."""
    from selenium.common.exceptions import StaleElementReferenceException
    try:
        element.is_enabled()
        return False
    except StaleElementReferenceException:
        return True


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def srv(damselfly_module):
    _browser_or_skip()
    _jobs_bin_or_skip()
    return damselfly_module()


@pytest.fixture(scope="module")
def web(srv, tmp_path_factory):
    """`damselfly-jobs web` with a 1 s live refresh; yields its base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("web") / "web.log"
    p = Proc([JOBS_BIN, "web", "--port", str(port), "--redis", url(srv), "--poll", "1"], str(log))
    base = f"http://127.0.0.1:{port}/"

    def up():
        try:
            return urllib.request.urlopen(base, timeout=2).status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    wait_for(up, 15, "the web server to answer", [p])
    yield base
    p.stop()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(15)
    yield driver
    driver.quit()


@pytest.fixture
def r(srv):
    c = srv.client(decode_responses=True)
    c.flushall()
    return c


def worker(srv, procs, tmp_path, *args):
    p = Proc([JOBS_BIN, "work", "--url", url(srv), "--heartbeat", "1", "--retry-delay", "3600", *args],
             str(tmp_path / f"worker-{len(procs)}.log"))
    procs.append(p)
    return p


def push(srv, *args):
    out = subprocess.run([JOBS_BIN, "push", "--url", url(srv), *args], capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode().split()


def shot(browser, tmp_path, name):
    browser.save_screenshot(str(tmp_path / f"jobs-web-{name}.png"))
    target = os.environ.get("JOBS_WEB_SCREENSHOTS")
    if target:
        d = REPO / target
        d.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(d / f"jobs-web-{name}.png"))


def counter(browser, name):
    return int(browser.find_element("id", f"stat-{name}").text.replace(",", ""))


def scheduled_payload(jid, args, queue="default", cls="RecordJob"):
    return json.dumps({"class": cls, "args": args, "queue": queue, "jid": jid, "retry": True,
                       "created_at": time.time(), "enqueued_at": time.time()})


# ---------------------------------------------------------------------------------------------


def test_failed_job_shows_in_retries_and_retry_now_runs_it(srv, web, browser, r, procs, tmp_path):
    w = worker(srv, procs, tmp_path)
    [jid] = push(srv, "--class", "FlakyJob", "--args", '["flaky:fixed", "flaky:ran"]')
    wait_for(lambda: r.zcard("retry") == 1, 15, "the failed job in the retry set", [w])
    wait_for(lambda: int(r.get("stat:failed") or 0) >= 1, 10, "the heartbeat to count the failure", [w])

    browser.get(web)
    processed_before = counter(browser, "processed")
    assert counter(browser, "failed") >= 1
    assert browser.find_element("id", "history-chart").tag_name == "svg"
    assert browser.find_element("id", "info-damselfly_version").text  # the server's own version line
    shot(browser, tmp_path, "dashboard")

    browser.get(web + "retries")
    row = browser.find_element("css selector", f'tr.entry[data-jid="{jid}"]')
    assert "FlakyJob" in row.text and "flaky:fixed is not set" in row.text
    assert counter(browser, "retries") == 1
    shot(browser, tmp_path, "retries")

    r.set("flaky:fixed", "1")  # the cause is fixed: now retry it by hand
    row.find_element("css selector", "button.retry-one").click()
    # The browser was on /retries already: the URL alone does not show that the POST's redirect
    # arrived. The old page's row going stale does (CI once read the row of the page before it).
    wait_for(lambda: is_stale(row), 5, "the page to be replaced")
    wait_for(lambda: browser.current_url.rstrip("/").endswith("/retries"), 5, "the redirect back to Retries")
    assert not browser.find_elements("css selector", f'tr.entry[data-jid="{jid}"]')
    wait_for(lambda: r.lrange("flaky:ran", 0, -1) == [f"{jid}:swift"], 15, "the retried job to run", [w])
    assert r.zcard("retry") == 0

    # The dashboard's counters move on their own (the page polls /stats every second).
    browser.get(web)
    wait_for(lambda: counter(browser, "processed") > processed_before, 15, "the live Processed counter to move", [w])
    assert counter(browser, "retries") == 0


def test_post_without_csrf_token_is_refused(srv, web, r):
    r.zadd("retry", {scheduled_payload("a" * 24, [1]): time.time() + 3600})
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def post(path, fields, use_opener=True):
        data = urllib.parse.urlencode(fields).encode()
        req = urllib.request.Request(web + path, data=data, method="POST")
        try:
            return (opener.open if use_opener else urllib.request.urlopen)(req, timeout=5).status
        except urllib.error.HTTPError as e:
            return e.code

    # No session cookie, no token.
    assert post("retries/all/delete", {}, use_opener=False) == 403
    page = opener.open(web + "retries", timeout=5).read().decode()
    token = re.search(r'name="authenticity_token" value="([0-9a-f]+)"', page).group(1)
    # The session's cookie but no field, or a field that is not the session's token.
    assert post("retries/all/delete", {}) == 403
    assert post("retries/all/delete", {"authenticity_token": "0" * len(token)}) == 403
    assert post("retries/all/delete", {"authenticity_token": token[:-2]}) == 403
    assert r.zcard("retry") == 1
    # The page's own token works (the redirect is followed back to the page).
    assert post("retries/all/delete", {"authenticity_token": token}) == 200
    assert r.zcard("retry") == 0


def test_kill_dead_retry_and_queue_pages(srv, web, browser, r, tmp_path):
    now = time.time()
    r.zadd("retry", {scheduled_payload("b" * 24, ["to-kill"]): now + 600, scheduled_payload("c" * 24, ["stays"]): now + 700})
    browser.get(web + "retries")
    browser.find_element("css selector", f'tr.entry[data-jid="{"b" * 24}"] button.kill-one').click()
    wait_for(lambda: r.zcard("dead") == 1, 5, "the killed job in the dead set")
    assert r.zcard("retry") == 1

    browser.get(web + "morgue")
    row = browser.find_element("css selector", f'tr.entry[data-jid="{"b" * 24}"]')
    assert "to-kill" in row.text
    shot(browser, tmp_path, "dead")
    row.find_element("css selector", "button.retry-one").click()
    wait_for(lambda: r.llen("queue:default") == 1, 5, "the dead job back in its queue")
    job = json.loads(r.lindex("queue:default", 0))
    assert job["jid"] == "b" * 24 and job["enqueued_at"] >= now
    assert r.zcard("dead") == 0 and "default" in r.smembers("queues")

    browser.get(web + "queues")
    assert browser.find_element("css selector", "#queues td.size").text == "1"
    shot(browser, tmp_path, "queues")
    browser.get(web + "queues/default")
    shot(browser, tmp_path, "queue")
    browser.find_element("css selector", "tr.job button.danger").click()
    wait_for(lambda: r.llen("queue:default") == 0, 5, "the job deleted from its queue")


def test_scheduled_escapes_args_and_bulk_add_to_queue(srv, web, browser, r, tmp_path):
    evil = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"
    r.zadd("schedule", {scheduled_payload("d" * 24, [evil]): time.time() + 3600,
                        scheduled_payload("e" * 24, ["plain"]): time.time() + 7200})
    browser.get(web + "scheduled")
    row = browser.find_element("css selector", f'tr.entry[data-jid="{"d" * 24}"]')
    assert evil in row.text  # shown as text ...
    assert not browser.find_elements("css selector", "main img") and browser.title != "pwned"  # ... never as markup
    assert "&lt;script&gt;" in browser.page_source
    shot(browser, tmp_path, "scheduled")

    # Filter, then select all shown and add them to their queue.
    box = browser.find_element("css selector", "form.filter input[name=substr]")
    box.send_keys("plain")
    box.submit()
    wait_for(lambda: len(browser.find_elements("css selector", "tr.entry")) == 1, 5, "the filtered list")
    browser.find_element("css selector", "input.check-all").click()
    browser.find_element("id", "bulk-enqueue").click()
    wait_for(lambda: r.llen("queue:default") == 1, 5, "the filtered job enqueued")
    assert json.loads(r.lindex("queue:default", 0))["jid"] == "e" * 24
    assert r.zcard("schedule") == 1


def test_busy_quiet_and_stop_reach_the_worker(srv, web, browser, r, procs, tmp_path):
    w = worker(srv, procs, tmp_path, "-c", "2", "-t", "1")
    push(srv, "--class", "SleepJob", "--args", "[30]")
    wait_for(lambda: r.scard("processes") == 1, 10, "the worker's heartbeat", [w])
    identity = next(iter(r.smembers("processes")))
    wait_for(lambda: r.hget(identity, "busy") == "1", 10, "the sleeping job to show as busy", [w])

    browser.get(web + "busy")
    assert "SleepJob" in browser.find_element("id", "workers").text
    shot(browser, tmp_path, "busy")
    browser.find_element("css selector", "tr.process button[name=quiet]").click()
    wait_for(lambda: r.hget(identity, "quiet") == "true", 10, "the worker to go quiet", [w])
    browser.get(web + "busy")
    assert "quiet" in browser.find_element("css selector", "tr.process").text
    browser.find_element("css selector", "tr.process button[name=stop]").click()
    wait_for(lambda: w.proc.poll() is not None, 20, "the worker to stop", [w])
    assert w.proc.returncode == 0
