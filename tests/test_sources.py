import time

import numpy as np
import pytest

from evapp.errors import InputError
from evapp.events import LabelInterval, SensorGeometry
from evapp.sources import open_source
from evapp.sources.aedat3 import read_aedat3, write_aedat3, write_labels_csv
from evapp.sources.aedat4 import to_event_store, write_aedat4
from evapp.testing import free_port, random_stream, start_server
from tests.conftest import DVX


def collect(source):
    parts = list(source.batches())
    return np.concatenate(parts)


def rebased(events):
    out = events.copy()
    out["timestamp"] -= out["timestamp"][0]
    return out


def test_aedat4_roundtrip_rebases_and_reads_labels(tmp_path):
    events = random_stream(25_000, 640, 480, seed=2)
    path = tmp_path / "take.aedat4"
    write_aedat4(path, events, DVX)
    t0 = int(events["timestamp"][0])
    labels = [LabelInterval(3, 1000, 9000), LabelInterval(10, 12_000, 20_000)]
    write_labels_csv(tmp_path / "take_labels.csv", labels, t0_us=t0)
    source = open_source(path)
    assert source.geometry == SensorGeometry(640, 480, "DVXplorer_DXA00000")
    got = collect(source)
    np.testing.assert_array_equal(got, rebased(events))
    assert source.labels == labels
    info = source.info()
    assert info.event_count == 25_000 and info.duration_us == int(events["timestamp"][-1]) - t0


def test_aedat4_with_imu_and_triggers_replays_its_events(tmp_path):
    import dv_processing as dv

    path = tmp_path / "multi.aedat4"
    config = dv.io.MonoCameraWriter.Config("DAVIS346_00000001")
    config.addEventStream((346, 260))
    config.addImuStream()
    config.addTriggerStream()
    writer = dv.io.MonoCameraWriter(str(path), config)
    events = random_stream(3000, 346, 260, seed=4)
    store = to_event_store(events)
    t0 = int(events["timestamp"][0])
    writer.writeImu(dv.IMU(t0, 25.0, 0, 0, 1, 0, 0, 0, 0, 0, 0))
    writer.writeEvents(store)
    writer.writeTrigger(dv.Trigger(t0 + 50, dv.TriggerType.EXTERNAL_SIGNAL_RISING_EDGE))
    del writer
    source = open_source(path)
    np.testing.assert_array_equal(collect(source), rebased(events))
    assert source.info().other_streams == ["imu", "triggers"]


def test_dvs128_gesture_aedat3_with_labels(tmp_path):
    events = random_stream(50_000, 128, 128, seed=5, t0=(1 << 31) - 20_000)  # crosses the 31-bit overflow
    path = tmp_path / "user01_fluorescent.aedat"
    write_aedat3(path, events)
    np.testing.assert_array_equal(read_aedat3(path), events)
    t0 = int(events["timestamp"][0])
    write_labels_csv(tmp_path / "user01_fluorescent_labels.csv", [LabelInterval(0, 100, 5000)], t0_us=t0)
    source = open_source(path)
    assert source.geometry.width == 128 and source.labels == [LabelInterval(0, 100, 5000)]
    assert source.label_classes[source.labels[0].class_id] == "hand_clapping"
    np.testing.assert_array_equal(collect(source), rebased(events))


def test_aedat3_skips_invalid_events_and_non_polarity_packets(tmp_path):
    import struct

    events = random_stream(100, 128, 128, seed=6)
    path = tmp_path / "mixed.aedat"
    write_aedat3(path, events)
    raw = bytearray(path.read_bytes())
    header_end = raw.index(b"#!END-HEADER\r\n") + len(b"#!END-HEADER\r\n")
    first_event = header_end + 28
    raw[first_event] &= 0xFE  # clear the valid bit of event 0
    special = struct.pack("<HHIIIIII", 0, 1, 8, 4, 0, 1, 1, 1) + b"\x00" * 8  # a "special event" packet
    raw[header_end:header_end] = special
    path.write_bytes(bytes(raw))
    np.testing.assert_array_equal(read_aedat3(path), events[1:])


def test_aedat_without_labels_works_without_ground_truth(tmp_path):
    path = tmp_path / "user02_led.aedat"
    write_aedat3(path, random_stream(1000, 128, 128))
    source = open_source(path)
    assert source.labels == []
    assert collect(source).shape[0] == 1000


def test_tonic_npy_sample(tmp_path):
    events = random_stream(4000, 128, 128, seed=7, t0=5_000)
    folder = tmp_path / "ibmGestureTest" / "user24_led"
    folder.mkdir(parents=True)
    arr = np.stack([events["x"], events["y"], events["polarity"], events["timestamp"] / 1000.0], axis=1)
    np.save(folder / "4.npy", arr)
    source = open_source(folder / "4.npy")
    got = collect(source)
    np.testing.assert_array_equal(got, rebased(events))
    assert source.labels[0].class_id == 4 and source.labels[0].start_us == 0


# expelliarmus writes no geometry line: its EVT3 header names the gen41 plugin (a 1280x720 IMX636-class
# sensor), its EVT2 header the gen3 plugin (640x480), and its DAT header nothing, so the events decide.
@pytest.mark.parametrize("encoding,suffix,size", [("evt3", ".raw", (1280, 720)), ("evt2", ".raw", (640, 480)),
                                                  ("dat", ".dat", (640, 480))])
def test_prophesee_files(tmp_path, encoding, suffix, size):
    from expelliarmus import Wizard

    events = random_stream(20_000, 640, 480, seed=8, t0=1000)
    arr = np.zeros(events.shape[0], dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    arr["t"], arr["x"], arr["y"], arr["p"] = events["timestamp"], events["x"], events["y"], events["polarity"]
    path = tmp_path / f"rec{suffix}"
    Wizard(encoding=encoding).save(path, arr)
    source = open_source(path)
    assert source.format_name == f"Prophesee {encoding.upper()}"
    assert (source.geometry.width, source.geometry.height) == size
    np.testing.assert_array_equal(collect(source), rebased(events))


def test_network_source_receives_exactly_what_was_sent_in_order():
    port = free_port()
    proc = start_server(port, 150_000, seed=11, batch=5000, linger=1.0)
    try:
        source = open_source(f"tcp://127.0.0.1:{port}")
        assert (source.geometry.width, source.geometry.height) == (640, 480)
        t0 = time.monotonic()
        got = collect(source)  # ends when the server leaves
        elapsed = time.monotonic() - t0
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    np.testing.assert_array_equal(got, rebased(random_stream(150_000, 640, 480, seed=11)))
    assert elapsed < 30  # bounded: the stream ends when the server goes away, it does not hang


def test_network_address_where_nothing_listens():
    with pytest.raises(InputError, match="Nothing accepts connections"):
        open_source(f"tcp://127.0.0.1:{free_port()}")


@pytest.mark.parametrize("spec", ["tcp://localhost", "tcp://:80"])
def test_malformed_network_address(spec):
    with pytest.raises(InputError, match="tcp://HOST:PORT"):
        open_source(spec)


def test_overlapping_and_unordered_label_rows_are_clipped_with_one_warning(tmp_path, caplog):
    # user22_led_labels.csv in DVS128 Gesture: a class-9 interval ends after the next one (class 10) starts.
    events = random_stream(20_000, 128, 128, seed=4)
    path = tmp_path / "user22_led.aedat"
    write_aedat3(path, events)
    t0 = int(events["timestamp"][0])
    (tmp_path / "user22_led_labels.csv").write_text(
        "class,startTime_usec,endTime_usec\n"
        f"8,{t0 + 1000},{t0 + 4000}\n"
        f"9,{t0 + 5000},{t0 + 9500}\n"  # row 3: overruns row 4 by 1.5 ms
        f"10,{t0 + 8000},{t0 + 12_000}\n"
        f"11,{t0 + 20_000},{t0 + 30_000}\n"
        f"1,{t0 + 14_000},{t0 + 16_000}\n")  # row 6: before row 5
    with caplog.at_level("WARNING", logger="evapp.sources.aedat3"):
        source = open_source(path)
        collect(source)
    assert source.labels == [LabelInterval(7, 1000, 4000), LabelInterval(8, 5000, 8000),
                             LabelInterval(9, 8000, 12_000), LabelInterval(0, 14_000, 16_000),
                             LabelInterval(10, 20_000, 30_000)]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0].startswith("user22_led_labels.csv: rows out of time order, sorted; row 3 (class 9) ends 1.5 ms "
                                  "after the next interval starts (row 4), clipped to that start")
