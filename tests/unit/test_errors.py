"""One base exception: every error the project raises on purpose is an InstoreError (and still
the built-in it refines), and `instore` prints one that no command handled as one line."""

from __future__ import annotations

import pytest

from instore import cli
from instore.embedded import StackError
from instore.errors import InstoreError
from instore.geo import GeoError
from instore.kafka import KafkaUnavailable
from instore.proximity import UnknownStore
from instore.records import RecordError
from mobile_push.local_hub.capability import CapabilityError
from stream_apps.ksqldb.errors import KsqlError, ParseError


@pytest.mark.parametrize(("error", "builtin"), [
    (GeoError, ValueError), (RecordError, ValueError), (UnknownStore, LookupError),
    (StackError, RuntimeError), (KafkaUnavailable, RuntimeError), (CapabilityError, ValueError),
    (ParseError, Exception),
])
def test_project_errors_share_one_base_and_keep_their_builtin(error: type[Exception],
                                                               builtin: type[Exception]) -> None:
    assert issubclass(error, InstoreError) and issubclass(error, builtin)
    assert issubclass(ParseError, KsqlError)


def test_an_unhandled_project_error_is_one_line_and_exit_1(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def boom() -> None:
        raise StackError("port 8080 is in use by another process: stop it or set API_PORT")

    monkeypatch.setattr(cli, "app", boom)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "error: port 8080 is in use" in err and "Traceback" not in err


def test_a_bug_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def bug() -> None:
        raise KeyError("not a project error")

    monkeypatch.setattr(cli, "app", bug)
    with pytest.raises(KeyError):
        cli.main()
