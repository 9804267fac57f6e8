import json
import os
import shutil
import subprocess
import sys

import pytest

from evapp.cli.main import main
from evapp.sources.aedat3 import write_aedat3
from evapp.sources.aedat4 import write_aedat4
from evapp.testing import free_port, random_stream
from tests.conftest import DVX, json_lines


def run_cli(*args, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "evapp", *args], capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("region,n", [("0,0,640,480", 5000), (None, 20000)])
def test_headless_replay_accounts_for_every_event(big_dvx_recording, region, n):
    path, events = big_dvx_recording
    args = ["replay", str(path), "--headless", "--max-speed", "--events-per-frame", str(n)]
    if region:
        args += ["--region", region]
    code, out, err = run_cli(*args)
    assert code == 0, err
    records = json_lines(out)
    frames = [r for r in records if r["type"] == "frame"]
    summary = records[-1]
    assert summary["type"] == "summary" and summary["frames"] == len(frames)
    assert summary["events_total"] == events.shape[0]
    assert all(f["events"] == n for f in frames)
    t = [f["t_us"] for f in frames]
    assert t == sorted(t) and t[-1] <= int(events["timestamp"][-1] - events["timestamp"][0])
    framed = sum(f["events"] for f in frames)
    if region == "0,0,640,480":  # the whole sensor: frames plus leftover are the file, exactly
        assert summary["events_outside_region"] == 0
        assert framed + summary["leftover_events"] == events.shape[0]
    else:  # default centred 480x480 square: the side bands are counted, not framed
        x = events["x"]
        outside = int(((x < 80) | (x >= 560)).sum())
        assert summary["events_outside_region"] == outside
        assert framed + summary["leftover_events"] + outside == events.shape[0]


def test_info_text_and_json(big_dvx_recording, capsys):
    path, events = big_dvx_recording
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "640x480" in text and "DVXplorer_DXA00000" in text and f"{events.shape[0]:,}" in text
    assert main(["info", str(path), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    duration = (events["timestamp"][-1] - events["timestamp"][0]) / 1e6
    assert record["events"] == events.shape[0] and record["duration_s"] == pytest.approx(duration)
    assert record["mean_rate_ev_per_s"] == pytest.approx(events.shape[0] / duration)


def test_cameras_without_a_camera(capsys):
    assert main(["cameras"]) == 0
    assert "No event camera was found" in capsys.readouterr().out


def test_replay_start_skips_the_beginning(tmp_path, capsys):
    events = random_stream(20_000, 128, 128, seed=3, rate_per_us=0.01)  # about 2 s
    path = tmp_path / "user05_lab.aedat"
    write_aedat3(path, events)
    assert main(["replay", str(path), "--headless", "--max-speed", "--start", "1.0", "-N", "1000"]) == 0
    records = json_lines(capsys.readouterr().out)
    rebased = events["timestamp"] - events["timestamp"][0]
    assert records[-1]["events_total"] == int((rebased >= 1_000_000).sum())
    assert records[0]["t_us"] >= 1_000_000


def make_bad_inputs(tmp_path):
    bad = {}
    bad["missing"] = (str(tmp_path / "nope.aedat4"), "does not exist")
    bad["directory"] = (str(tmp_path), "is a directory")
    (tmp_path / "notes.txt").write_text("hello")
    bad["unknown extension"] = (str(tmp_path / "notes.txt"), "unknown extension")
    good = tmp_path / "good.aedat4"
    write_aedat4(good, random_stream(30_000, 640, 480), DVX)
    data = good.read_bytes()
    (tmp_path / "truncated.aedat4").write_bytes(data[:3000])  # inside its first packet
    bad["truncated aedat4"] = (str(tmp_path / "truncated.aedat4"), "holds no readable events: it was cut off")
    corrupt = bytearray(data)
    corrupt[:64] = b"\x00" * 64
    (tmp_path / "corrupt.aedat4").write_bytes(bytes(corrupt))
    bad["corrupt aedat4"] = (str(tmp_path / "corrupt.aedat4"), "is not an AEDAT4 recording (it does not start with")
    write_aedat4(tmp_path / "empty.aedat4", [], DVX)
    bad["no events"] = (str(tmp_path / "empty.aedat4"), "contains no events")
    (tmp_path / "zero.aedat4").write_bytes(b"")
    bad["zero bytes"] = (str(tmp_path / "zero.aedat4"), "is empty")
    write_aedat3(tmp_path / "full.aedat", random_stream(10_000, 128, 128))
    data = (tmp_path / "full.aedat").read_bytes()
    (tmp_path / "cut.aedat").write_bytes(data[: len(data) - 1000])
    bad["truncated aedat"] = (str(tmp_path / "cut.aedat"), "truncated")
    (tmp_path / "old.aedat").write_bytes(b"#!AER-DAT2.0\r\n" + bytes(100))
    bad["aedat2"] = (str(tmp_path / "old.aedat"), "AEDAT 3.x header")
    bad["tcp nothing listening"] = (f"tcp://127.0.0.1:{free_port()}", "Nothing accepts connections")
    return bad


@pytest.mark.parametrize("command", ["replay", "info"])
def test_bad_inputs_give_one_sentence_and_nonzero_exit(tmp_path, capsys, command):
    for name, (spec, phrase) in make_bad_inputs(tmp_path).items():
        if command == "info" and spec.startswith("tcp://"):
            continue
        args = [command, spec] + (["--headless", "--max-speed"] if command == "replay" else [])
        code = main(args)
        captured = capsys.readouterr()
        assert code != 0, name
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("evapp: error:"), (name, captured.err)
        assert phrase in lines[0], (name, lines[0])
        assert "Traceback" not in captured.err


@pytest.mark.parametrize("args,phrase", [
    (["--speed", "fast"], "'fast' is not a number"),
    (["--speed", "0"], "must be greater than 0"),
    (["--region", "1,2,3"], "not four integers"),
    (["-N", "zero"], "not a valid integer"),
])
def test_bad_options(big_dvx_recording, capsys, args, phrase):
    path, _ = big_dvx_recording
    code = main(["replay", str(path), "--headless", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and phrase in err


def test_debug_shows_the_traceback(tmp_path):
    code, _, err = run_cli("replay", str(tmp_path / "missing.aedat4"), "--headless", "--debug")
    assert code == 2 and "Traceback" in err and "does not exist" in err


def command_paths(group, prefix=()):
    """Every command and group under ``group``, as the argument lists that name it."""
    for name, command in sorted(group.commands.items()):
        yield [*prefix, name]
        if hasattr(command, "commands"):
            yield from command_paths(command, (*prefix, name))


def test_every_command_has_help(capsys):
    from evapp.cli.main import cli

    paths = [[], *command_paths(cli)]
    assert len(paths) > 18 and ["bench", "live", "max-rate"] in paths and ["eval-stream"] in paths
    for args in paths:
        assert main([*args, "--help"]) == 0, args
        out = capsys.readouterr().out
        assert out.startswith(f"Usage: evapp {' '.join(args)}".rstrip()) and "--help" in out, (args, out)


def test_bench_binning_json(capsys):
    assert main(["bench", "binning", "--events", "200000", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["machine"].startswith("machine:")
    cases = {(r["sensor"], r["N"]) for r in record["binning"]}
    assert cases == {("128x128", 5000), ("128x128", 20000), ("640x480", 5000), ("640x480", 20000)}
    assert all(r["ours_mev_s"] > 0 and r["tonic_mev_s"] > 0 for r in record["binning"])


def test_usage_errors_name_the_command_to_ask(capsys):
    assert main(["frobnicate"]) == 2
    assert capsys.readouterr().err.strip() == "evapp: error: No such command 'frobnicate' (see 'evapp --help')."
    assert main(["bench", "model", "--iters", "0"]) == 2
    assert "(see 'evapp bench model --help')" in capsys.readouterr().err


def test_help_never_cuts_a_summary_short(capsys):
    from evapp.cli.main import cli

    for args in ([], ["bench"], ["bench", "live"]):
        assert main([*args, "--help"]) == 0
        listing = capsys.readouterr().out.split("Commands:")[1]
        assert "..." not in listing, args
    assert set(cli.commands) >= {"demo", "replay", "live", "eval-stream"}


def test_a_reader_that_goes_away_is_not_an_error(big_dvx_recording):
    path, _ = big_dvx_recording
    proc = subprocess.Popen([sys.executable, "-m", "evapp", "replay", str(path), "--headless", "--no-model"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()  # like `| head -n 1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert json.loads(first)["type"] == "frame" and err == ""


def test_start_past_the_end_is_one_sentence(big_dvx_recording, capsys):
    path, events = big_dvx_recording
    duration_s = (events["timestamp"][-1] - events["timestamp"][0]) / 1e6
    assert main(["replay", str(path), "--headless", "--no-model", "--start", str(duration_s + 5)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"ends at {duration_s:.1f} s, before the start asked for" in err[0]


def test_native_library_messages_lose_their_source_paths(tmp_path, capsys):
    from evapp.errors import native_reason

    boost = RuntimeError("connect: Connection refused [system:111 at /vcpkg/include/boost/asio/detail/"
                         "reactive_socket_service.hpp:588 in function 'boost::system::error_code connect(x&)']")
    assert native_reason(boost) == "connect: Connection refused"
    dv = RuntimeError("/project/include/dv-processing/io/simplefile.hpp(313): void dv::io::SimpleFile::readInto("
                      "T*, size_t) const [with T = std::byte; size_t = long unsigned int]()")
    assert native_reason(dv) == ""
    text = tmp_path / "notes.aedat4"
    text.write_text("not events\n")
    assert main(["info", str(text)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"evapp: error: {text} is not an AEDAT4 recording (it does not start with the AEDAT4 header " \
                  "'#!AER-DAT4.0')."
    assert main(["replay", f"tcp://127.0.0.1:{free_port()}", "--headless", "--no-model"]) == 2
    err = capsys.readouterr().err
    assert "Connection refused" in err and "/" not in err.split("tcp://")[1].split(")")[0][10:]


def test_the_window_without_a_display_is_one_sentence(big_dvx_recording, tmp_path):
    path, _ = big_dvx_recording
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run([sys.executable, "-m", "evapp", "replay", str(path), "--no-model"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "evapp: error: There is no display to open the window on (DISPLAY is not set): " \
                                  "run with --headless, or under a virtual display (xvfb-run evapp ...)."


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("ldd") is None, reason="needs gcc and ldd to build a "
                    "library whose dependency is missing")
def test_missing_system_libraries_are_named_with_their_packages(tmp_path):
    from evapp.gui.app import debian_package, missing_libraries

    (tmp_path / "dep.c").write_text("int dep(void) { return 1; }\n")
    (tmp_path / "main.c").write_text("int dep(void);\nint run(void) { return dep(); }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "libevapp-absent.so.0"), str(tmp_path / "dep.c"),
                    "-Wl,-soname,libevapp-absent.so.0"], check=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "libplugin.so"), str(tmp_path / "main.c"),
                    f"-L{tmp_path}", "-l:libevapp-absent.so.0"], check=True)
    (tmp_path / "libevapp-absent.so.0").unlink()  # like a system package that is not installed
    assert missing_libraries(tmp_path / "libplugin.so") == ["libevapp-absent.so.0"]
    assert [debian_package(n) for n in ("libxcb-cursor.so.0", "libxkbcommon-x11.so.0", "libxcb-icccm.so.4")] == [
        "libxcb-cursor0", "libxkbcommon-x11-0", "libxcb-icccm4"]
