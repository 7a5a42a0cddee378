import urllib.request

import pytest

from studio.app import TABS, build_app
from studio.commands import parse_auth


def test_five_tabs_in_workflow_order():
    assert [t.TITLE for t in TABS] == ["Dataset", "Annotate", "Train", "Generate", "DPO"]


def test_app_serves_on_loopback():
    app = build_app()
    app.queue(api_open=False)
    try:
        app.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                   enable_monitoring=False)
        with urllib.request.urlopen(app.local_url, timeout=30) as response:
            assert response.status == 200
            page = response.read().decode("utf-8")
        assert "NotaGen Studio" in page
        assert app.server_name == "127.0.0.1"
    finally:
        app.close()


def test_share_without_auth_gets_a_generated_password(capsys):
    user, password = parse_auth(None, share=True)
    assert user == "studio" and len(password) >= 20
    assert password in capsys.readouterr().err
    assert parse_auth(None, share=False) is None
    assert parse_auth("ann:s3cret", share=True) == ("ann", "s3cret")
    with pytest.raises(SystemExit):
        parse_auth("no-colon", share=False)
