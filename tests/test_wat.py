"""The web administration tool in a real headless Chromium, against a real qvd-api over TLS
and the test database (and a real qvd-hkd where a VM must really start): log in, forms with
their errors next to the field, a VM started from the list turning running with no reload,
a bulk stop by filter with its count, a DI upload with its progress, a tenant administrator
who sees only its tenant and is offered nothing its role forbids (and is refused when it
forces the URL), detail pages, properties, settings and the roles editor."""
import http.client
import os

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.select import Select

from admins import PASSWORD, make_admin
from browser import (console_errors, no_external_requests, screenshot, set_phone_size,
                     wait_for)
from conftest import make_host_running
from hkd_nodes import HkdNode
from test_api import api  # noqa: F401  (api: a real qvd-api, the fixture)

ROOT = "root@*"
SCREENSHOTS = os.environ.get("QVD_SCREENSHOTS")  # a folder: keep the pictures (README)


def url(api, path: str) -> str:
    return f"https://127.0.0.1:{api.port}{path}"


def log_in(page, api, login: str, password: str = PASSWORD):
    name, _, tenant = login.partition("@")
    page.get(url(api, "/wat/login"))
    page.find_element(By.NAME, "name").send_keys(name)
    page.find_element(By.NAME, "tenant").send_keys(tenant)
    page.find_element(By.NAME, "password").send_keys(password)
    page.find_element(By.CSS_SELECTOR, "form.login button").click()


def shown(page, condition, timeout: float = 30):
    """wait_for, with what the page says when the condition never comes."""
    try:
        return wait_for(page, condition, timeout)
    except TimeoutException:
        body = page.find_element(By.TAG_NAME, "body").text
        raise AssertionError(f"not seen on {page.current_url}:\n{body}") from None


def text(page, css: str) -> str:
    return page.find_element(By.CSS_SELECTOR, css).text


def keep(page, name: str, tmp_path):
    screenshot(page, os.path.join(SCREENSHOTS or str(tmp_path), name))


def vm_id(demo, name: str) -> int:
    (key,), = demo.sql("SELECT id FROM vms WHERE name = :n", n=name)
    return key


def test_login_dashboard_and_logout(demo, api, page, tmp_path):
    make_admin(demo, ROOT, "Root")
    log_in(page, api, ROOT, "not-the-password")
    assert "wrong" in shown(page, EC.visibility_of_element_located(
        (By.ID, "login-error"))).text
    console_errors(page)  # the refused login's 401, as the browser logs it
    log_in(page, api, ROOT)
    shown(page, EC.presence_of_element_located((By.ID, "vm-states")))
    assert text(page, "#who") == "root@*"
    assert text(page, "#state-stopped") == "stopped 1"
    assert "node1" in text(page, "#nodes")
    assert no_external_requests(page) == [] and console_errors(page) == []
    demo.sql("UPDATE admin_tokens SET expires_at = now()")  # the session expires
    page.get(url(api, "/wat/vms"))
    assert "expired" in shown(page, EC.visibility_of_element_located(
        (By.ID, "login-error"))).text
    # With the keyboard alone: the name field has the focus, Tab moves on, Enter logs in.
    page.switch_to.active_element.send_keys("root", Keys.TAB, "*", Keys.TAB, PASSWORD,
                                            Keys.ENTER)
    shown(page, EC.presence_of_element_located((By.ID, "vm-states")))
    set_phone_size(page)  # the menu and the tiles fit a phone: nothing wider than it
    assert page.execute_script("return document.documentElement.scrollWidth") <= 390
    page.get(url(api, "/wat/vms"))  # a list scrolls inside its own box, not the page
    assert page.execute_script("return document.documentElement.scrollWidth") <= 390
    keep(page, "wat-phone.png", tmp_path)
    page.find_element(By.CSS_SELECTOR, "form.who button").click()
    shown(page, EC.presence_of_element_located((By.CSS_SELECTOR, "form.login")))
    page.get(url(api, "/wat/vms"))  # the token is gone: back to the login page
    shown(page, EC.presence_of_element_located((By.CSS_SELECTOR, "form.login")))


def test_forms_show_the_domain_error_next_to_the_field(demo, api, page):
    make_admin(demo, ROOT, "Root")
    log_in(page, api, ROOT)
    shown(page, EC.presence_of_element_located((By.ID, "vm-states")))
    page.get(url(api, "/wat/users/new"))
    page.find_element(By.ID, "field-login").send_keys("bob@nowhere")
    page.find_element(By.ID, "field-password").send_keys("bobs-password")
    page.find_element(By.ID, "submit").click()
    error = shown(page, EC.visibility_of_element_located((By.ID, "error-login")))
    assert "nowhere" in error.text
    assert page.find_element(By.ID, "field-login").get_attribute("aria-invalid") == "true"
    login = page.find_element(By.ID, "field-login")
    login.clear()
    login.send_keys("bob@acme")
    page.find_element(By.ID, "field-password").send_keys("bobs-password")
    page.find_element(By.ID, "submit").click()
    shown(page, EC.presence_of_element_located((By.ID, "rows")))
    assert "bob" in text(page, "#rows")
    assert demo.sql("SELECT count(*) FROM users WHERE login = 'bob'") == [(1,)]

    page.get(url(api, "/wat/vms/new"))
    for field, value in (("name", "bobs-desk"), ("user", "bob@acme"), ("osf", "no-such-osf")):
        page.find_element(By.ID, f"field-{field}").send_keys(value)
    page.find_element(By.ID, "submit").click()
    assert "no-such-osf" in shown(page, EC.visibility_of_element_located(
        (By.ID, "error-osf"))).text
    assert page.find_element(By.ID, "field-name").get_attribute("value") == "bobs-desk"
    osf = page.find_element(By.ID, "field-osf")
    osf.clear()
    osf.send_keys("desktop")
    page.find_element(By.ID, "submit").click()
    shown(page, EC.presence_of_element_located((By.ID, "rows")))
    assert demo.sql("SELECT u.login FROM vms v JOIN users u ON u.id = v.user_id "
                    "WHERE v.name = 'bobs-desk'") == [("bob",)]


def test_a_vm_started_from_the_list_turns_running_without_a_reload(demo, api, page, tmp_path):
    make_admin(demo, ROOT, "Root")
    node = HkdNode(demo, "node1")
    node.start()
    try:
        key = vm_id(demo, "desk")
        log_in(page, api, ROOT)
        shown(page, EC.presence_of_element_located((By.ID, "vm-states")))
        page.get(url(api, "/wat/vms"))
        page.execute_script("window.notReloaded = true")
        page.find_element(By.CSS_SELECTOR, f"#vm-{key} input[name=id]").click()
        page.find_element(By.ID, "act-start").click()
        assert shown(page, EC.visibility_of_element_located(
            (By.ID, "confirm-text"))).text == "Start 1 vm?"
        page.find_element(By.ID, "confirm-yes").click()
        state = (By.CSS_SELECTOR, f"#vm-{key} td[data-field=state]")
        shown(page, EC.text_to_be_present_in_element(state, "running"), 60)
        assert text(page, f"#vm-{key} td[data-field=host]") == "node1"
        keep(page, "wat-vms.png", tmp_path)
        demo.ok("vm", "add", "-t", "acme", "name=second", "user=alice", "osf=desktop")
        shown(page, EC.presence_of_element_located((By.ID, f"vm-{vm_id(demo, 'second')}")))
        assert page.execute_script("return window.notReloaded") is True
        page.get(url(api, f"/wat/vms/{key}"))  # its page: every field, its sessions
        assert shown(page, EC.presence_of_element_located((By.ID, "field-state"))).text \
            == "running"
        assert "Sessions" in text(page, "#related-sessions")
        assert console_errors(page) == []
    finally:
        demo.ok("vm", "stop", "-f", "name=desk", "-t", "acme")
        node.cleanup()


def test_bulk_stop_by_filter_says_how_many_and_stops_those(demo, api, page, tmp_path):
    make_admin(demo, ROOT, "Root")
    host = make_host_running(demo, "node1")
    demo.ok("vm", "add", "-t", "acme", "name=lab", "user=alice", "osf=desktop", "bulk=3")
    demo.sql("UPDATE vm_runtimes SET vm_state = 'running', host_id = :h", h=host)
    demo.sql("UPDATE vm_runtimes SET user_state = 'connected', l7r_pid = 1, l7r_host_id = host_id "
             "WHERE vm_id = :v",
             v=vm_id(demo, "lab-1"))
    # They run v1; the default tag moves to v2: a rollout in progress.
    demo.sql("UPDATE vm_runtimes SET current_di_id = (SELECT id FROM dis WHERE version = 'v1')")
    image = tmp_path / "v2.tar"
    image.write_bytes(b"image v2")
    demo.ok("di", "add", "-t", "acme", f"path={image}", "osf=desktop", "version=v2")
    demo.ok("di", "tag", "-t", "acme", "-f", "version=v2", "tag=default")
    log_in(page, api, ROOT)
    assert shown(page, EC.presence_of_element_located((By.ID, "state-running"))).text \
        == "running 4"
    assert "lab-1" in text(page, "#connected")
    assert "tag default is now version v2: 4 of 4 running VMs" in text(page, "#rollouts")
    keep(page, "wat-dashboard.png", tmp_path)
    page.get(url(api, "/wat/vms?f.name=lab-*"))
    assert len(page.find_elements(By.CSS_SELECTOR, "#rows tbody tr")) == 3
    page.find_element(By.CSS_SELECTOR, "input[name=scope][value=filter]").click()
    page.find_element(By.ID, "act-stop").click()
    confirm = shown(page, EC.visibility_of_element_located((By.ID, "confirm-text")))
    assert confirm.text == "Stop 3 vms (everything the filter matches)?"
    page.find_element(By.ID, "confirm-yes").click()
    shown(page, EC.visibility_of_element_located((By.ID, "action-done")))
    assert demo.sql("SELECT v.name, r.vm_cmd FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id "
                    "ORDER BY v.name") == [("desk", None), ("lab-1", "stop"),
                                           ("lab-2", "stop"), ("lab-3", "stop")]
    # The domain layer's refusal is shown where the confirmation was.
    page.find_element(By.CSS_SELECTOR, f"#vm-{vm_id(demo, 'lab-1')} input[name=id]").click()
    page.find_element(By.CSS_SELECTOR, "input[name=scope][value=selected]").click()
    page.find_element(By.ID, "act-del").click()
    shown(page, EC.text_to_be_present_in_element((By.ID, "confirm-text"), "Delete 1 vm?"))
    page.find_element(By.ID, "confirm-yes").click()
    assert "stop it first, nothing was deleted" in shown(page, EC.visibility_of_element_located(
        (By.ID, "action-error"))).text
    assert demo.sql("SELECT count(*) FROM vms") == [(4,)]


def test_a_di_upload_shows_its_progress(demo, api, page, tmp_path):
    make_admin(demo, ROOT, "Root")
    image = tmp_path / "new-image.tar"
    image.write_bytes(os.urandom(700 * 1024))
    log_in(page, api, ROOT)
    shown(page, EC.presence_of_element_located((By.ID, "vm-states")))
    page.get(url(api, "/wat/dis/upload"))
    Select(page.find_element(By.ID, "upload-tenant")).select_by_visible_text("acme")
    page.find_element(By.ID, "upload-osf").send_keys("desktop")
    page.find_element(By.ID, "upload-version").send_keys("v2")
    page.find_element(By.ID, "upload-file").send_keys(str(image))
    page.find_element(By.ID, "upload-start").click()
    shown(page, EC.text_to_be_present_in_element((By.ID, "upload-status"), "uploaded"))
    assert page.find_element(By.ID, "upload-progress").get_attribute("value") == "100"
    assert demo.sql("SELECT version FROM dis ORDER BY id") == [("v1",), ("v2",)]


def test_a_tenant_administrator_sees_its_tenant_and_no_forbidden_action(demo, api, page):
    demo.ok("tenant", "add", "name=other")
    demo.ok("user", "add", "-t", "other", "login=olga", "password=x")
    demo.ok("osf", "add", "-t", "other", "name=theirs")
    demo.ok("vm", "add", "-t", "other", "name=olgas-desk", "user=olga", "osf=theirs")
    make_admin(demo, "watcher@acme", "Operator L1")
    log_in(page, api, "watcher@acme")
    shown(page, EC.presence_of_element_located((By.ID, "vm-states")))
    page.get(url(api, "/wat/vms"))
    assert [r.text.split()[1] for r in page.find_elements(By.CSS_SELECTOR, "#rows tbody tr")] \
        == ["desk"]
    assert page.find_elements(By.CSS_SELECTOR, "[id^=act-]") == []  # read-only: no buttons
    assert page.find_elements(By.ID, "add") == []
    menu = text(page, "header nav")
    assert "Nodes" not in menu  # nodes are shared by every tenant: not its business
    # Forcing the action with its own cookie, from the page itself, is refused.
    key = vm_id(demo, "desk")
    status = page.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const body = new URLSearchParams({verb: "start", id: arguments[0], confirmed: "yes"});
        fetch("/wat/vms/act", {method: "POST", body}).then(r => done(r.status));""", key)
    assert status == 403
    assert demo.sql("SELECT vm_cmd FROM vm_runtimes") == [(None,), (None,)]
    page.get(url(api, f"/wat/vms/{vm_id(demo, 'olgas-desk')}"))  # another tenant's VM
    assert "no vm" in shown(page, EC.visibility_of_element_located(
        (By.ID, "page-error"))).text


def test_detail_pages_properties_settings_and_roles(demo, api, page):
    make_admin(demo, ROOT, "Root")
    make_admin(demo, "ops@acme")
    demo.sql("UPDATE vm_runtimes SET last_error = 'the agent did not answer in 20 s'")
    log_in(page, api, ROOT)
    shown(page, EC.presence_of_element_located((By.ID, "vm-states")))
    assert "the agent did not answer in 20 s" in text(page, "#errors")
    key = vm_id(demo, "desk")
    page.get(url(api, f"/wat/vms/{key}"))
    assert text(page, "#field-last_error") == "the agent did not answer in 20 s"
    form = page.find_element(By.ID, "property-form")
    form.find_element(By.NAME, "key").send_keys("room")
    form.find_element(By.NAME, "value").send_keys("B-12")
    form.find_element(By.CSS_SELECTOR, "button").click()
    shown(page, EC.text_to_be_present_in_element((By.ID, "properties"), "B-12"))
    page.find_element(By.CSS_SELECTOR, "#properties button.danger").click()
    shown(page, EC.text_to_be_present_in_element((By.ID, "properties"), "none"))

    page.get(url(api, f"/wat/vms/{key}/do/edit"))  # expiration through the date picker
    assert page.find_element(By.ID, "field-expiration_soft").get_attribute("type") == \
        "datetime-local"
    page.find_element(By.ID, "field-di_tag").send_keys("no-such-tag")
    page.find_element(By.ID, "submit").click()
    assert "no-such-tag" in shown(page, EC.visibility_of_element_located(
        (By.ID, "error-di_tag"))).text

    page.get(url(api, "/wat/configs?f.key=l7r.auth.backoff.*"))
    row = page.find_element(By.ID, "config-l7r.auth.backoff.seconds")
    assert row.find_element(By.CSS_SELECTOR, ".source").text == "default"
    assert row.find_element(By.CSS_SELECTOR, ".doc").text  # its documentation is shown
    value = row.find_element(By.NAME, "value")
    value.clear()
    value.send_keys("7")
    row.find_element(By.CSS_SELECTOR, "button").click()
    shown(page, EC.presence_of_element_located((By.ID, "done")))
    row = page.find_element(By.ID, "config-l7r.auth.backoff.seconds")
    assert row.find_element(By.CSS_SELECTOR, ".source").text == "global"  # the database's
    assert row.find_element(By.CSS_SELECTOR, ".value").text == "7"

    # A role made of a role and a denial; the administrator's effective ACLs follow it.
    page.get(url(api, "/wat/roles/new"))
    page.find_element(By.ID, "field-name").send_keys("auditors")
    page.find_element(By.ID, "submit").click()  # each click below loads another page
    shown(page, EC.element_to_be_clickable(
        (By.XPATH, "//tr[td[normalize-space()='auditors']]//a"))).click()
    shown(page, EC.element_to_be_clickable((By.ID, "form-acl"))).click()
    shown(page, EC.presence_of_element_located((By.ID, "field-grant_role"))).send_keys(
        "Operator L1")
    page.find_element(By.ID, "field-deny").send_keys("log.see-main.")
    page.find_element(By.ID, "submit").click()
    shown(page, EC.presence_of_element_located((By.ID, "done")))
    (ops,), = demo.sql("SELECT id FROM administrators WHERE name = 'ops'")
    page.get(url(api, f"/wat/admins/{ops}"))
    page.find_element(By.ID, "form-role").click()
    shown(page, EC.presence_of_element_located((By.ID, "field-grant"))).send_keys("auditors")
    page.find_element(By.ID, "submit").click()
    effective = shown(page, EC.presence_of_element_located((By.ID, "related-acls"))).text
    assert "vm.see-main." in effective and "log.see-main." not in effective


def test_cross_site_posts_are_refused(demo, api):
    conn = http.client.HTTPSConnection("127.0.0.1", api.port, context=api.context)
    conn.request("POST", "/wat/vms/act", body="verb=stop&id=1",
                 headers={"Origin": "https://elsewhere.example",
                          "Content-Type": "application/x-www-form-urlencoded"})
    assert conn.getresponse().status == 403
