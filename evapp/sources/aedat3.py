"""DVS128 Gesture originals: AEDAT 3.1 files and their ``_labels.csv`` (reference/event-io.md section 3).

Layout: ``#``-prefixed ASCII header lines ending with ``#!END-HEADER\\r\\n``, then packets, each a 28-byte
little-endian header ``<HHIIIIII`` (eventType, eventSource, eventSize, eventTSOffset, eventTSOverflow,
eventCapacity, eventNumber, eventValid) followed by ``eventCapacity * eventSize`` bytes. Polarity packets
have eventType 1 and eventSize 8: a u32 data word (bit 0 valid, bit 1 polarity, bits 2-16 y, bits 17-31 x)
and a u32 timestamp; the full time is ``ts | (tsOverflow << 31)`` µs.

The reader is vectorised: one ``np.frombuffer`` per packet over a memory map, no Python loop per event.
The writer exists so that tests and ``evapp simulate`` make files in exactly the dataset's format.
"""

from __future__ import annotations

import csv
import json
import logging
import struct
from pathlib import Path

import numpy as np

from evapp.errors import InputError
from evapp.events import EVENT_DTYPE, GESTURE_CLASSES, LabelInterval, empty_events

PACKET_HEADER = struct.Struct("<HHIIIIII")
POLARITY_EVENT = 1
_POLARITY_WORD = np.dtype([("data", "<u4"), ("ts", "<u4")])
DVS128_SIZE = (128, 128)

log = logging.getLogger(__name__)


class Aedat3FormatError(InputError):
    """The file is not a readable AEDAT 3.1 polarity recording."""


def _header_end(buf: memoryview | bytes | np.ndarray) -> int:
    raw = bytes(buf[:65536])
    if not raw.startswith(b"#!AER-DAT3"):
        raise Aedat3FormatError("it does not start with the AEDAT 3.x header '#!AER-DAT3'")
    end = raw.find(b"#!END-HEADER")
    newline = raw.find(b"\n", end) if end >= 0 else -1
    if newline < 0:
        raise Aedat3FormatError("its header has no '#!END-HEADER' line")
    return newline + 1


def iter_aedat3_batches(path: str | Path):
    """Yield polarity events packet by packet as raw (absolute-time) arrays in the program's dtype."""
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    pos = _header_end(buf)
    size = buf.shape[0]
    while pos + PACKET_HEADER.size <= size:
        etype, _src, esize, _tsoff, overflow, capacity, _number, _valid = PACKET_HEADER.unpack_from(buf, pos)
        pos += PACKET_HEADER.size
        nbytes = capacity * esize
        if pos + nbytes > size:
            raise Aedat3FormatError(f"a packet at byte {pos - PACKET_HEADER.size} is cut off (file truncated)")
        if etype == POLARITY_EVENT and capacity:
            if esize != 8:
                raise Aedat3FormatError(f"polarity packets have event size {esize}, expected 8")
            words = np.frombuffer(buf, dtype=_POLARITY_WORD, count=capacity, offset=pos)
            data = words["data"]
            valid = (data & 1).astype(bool)
            data = data[valid]
            out = np.empty(data.shape[0], dtype=EVENT_DTYPE)
            out["timestamp"] = words["ts"][valid].astype(np.int64) | (np.int64(overflow) << 31)
            out["x"] = (data >> 17) & 0x7FFF
            out["y"] = (data >> 2) & 0x7FFF
            out["polarity"] = (data >> 1) & 1
            if out.shape[0]:
                yield out
        pos += nbytes
    if pos != size:
        raise Aedat3FormatError(f"its last {size - pos} bytes are a cut-off packet header (file truncated)")


def read_aedat3(path: str | Path) -> np.ndarray:
    """All polarity events of an AEDAT 3.1 file, absolute timestamps."""
    parts = list(iter_aedat3_batches(path))
    return np.concatenate(parts) if parts else empty_events()


def write_aedat3(path: str | Path, events: np.ndarray, packet_size: int = 4096) -> None:
    """Write events (program dtype, absolute µs, monotonic) as DVS128 AEDAT 3.1 polarity packets."""
    path = Path(path)
    with open(path, "wb") as f:
        f.write(b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n")
        for start in range(0, events.shape[0], packet_size):
            chunk = events[start : start + packet_size]
            t = chunk["timestamp"].astype(np.int64)
            overflow = int(t[0] >> 31)
            # One packet shares one overflow value: split where the 31-bit counter wraps.
            same = (t >> 31) == overflow
            if not same.all():
                cut = int(np.argmin(same))
                write_aedat3_packet(f, chunk[:cut], overflow)
                chunk, t = chunk[cut:], t[cut:]
                overflow = int(t[0] >> 31)
            write_aedat3_packet(f, chunk, overflow)


def write_aedat3_packet(f, chunk: np.ndarray, overflow: int) -> None:
    n = chunk.shape[0]
    words = np.empty(n, dtype=_POLARITY_WORD)
    words["data"] = (
        (chunk["x"].astype(np.uint32) << 17)
        | (chunk["y"].astype(np.uint32) << 2)
        | (chunk["polarity"].astype(np.uint32) << 1)
        | 1
    )
    words["ts"] = (chunk["timestamp"].astype(np.int64) & 0x7FFFFFFF).astype(np.uint32)
    f.write(PACKET_HEADER.pack(POLARITY_EVENT, 1, 8, 4, overflow, n, n, n))
    f.write(words.tobytes())


def labels_path_for(aedat_path: str | Path) -> Path:
    p = Path(aedat_path)
    return p.with_name(p.stem + "_labels.csv")


CLASSES_FILE = "classes.json"


def read_class_names(folder: str | Path) -> tuple[str, ...]:
    """The class list a folder's labels CSVs number (1-based): its ``classes.json`` (a JSON list of names, as
    ``evapp collect`` and ``evapp simulate`` write), else DVS128 Gesture's 11 classes."""
    path = Path(folder) / CLASSES_FILE
    if not path.is_file():
        return GESTURE_CLASSES
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Aedat3FormatError(f"{path} is not a readable class list ({exc})") from None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names) \
            or len(set(names)) != len(names):
        raise Aedat3FormatError(f"{path} should hold a JSON list of distinct class names")
    return tuple(names)


def write_class_names(folder: str | Path, names) -> Path:
    path = Path(folder) / CLASSES_FILE
    path.write_text(json.dumps(list(names), indent=1) + "\n", encoding="utf-8")
    return path


def read_labels_csv(path: str | Path, t0_us: int = 0, num_classes: int | None = None) -> list[LabelInterval]:
    """Read ``class,startTime_usec,endTime_usec`` rows (1-based classes; ``1..num_classes`` when given) as 0-based
    intervals rebased by t0, in time order.

    Intervals are made disjoint: one that overruns the next one's start is clipped to it (DVS128 Gesture's own
    ``user22_led_labels.csv`` has such a row), with one warning per file naming the rows."""
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for row_number, row in enumerate(csv.DictReader(f), start=2):  # row 1 is the header
                try:
                    cls = int(row["class"]) - 1
                    start, end = int(row["startTime_usec"]), int(row["endTime_usec"])
                except (KeyError, TypeError, ValueError) as exc:
                    raise Aedat3FormatError(f"{path} is not a DVS128 Gesture labels file (row {row_number}: "
                                            f"{exc}).") from None
                if cls < 0 or (num_classes is not None and cls >= num_classes):
                    known = f"its class list's 1..{num_classes}" if num_classes is not None else "1 and up"
                    raise Aedat3FormatError(f"{path} labels class {cls + 1} in row {row_number}, outside {known}.")
                if start < 0 or end < 0:
                    raise Aedat3FormatError(f"{path} has a negative time in row {row_number}.")
                rows.append((row_number, LabelInterval(cls, start - t0_us, end - t0_us)))
    except UnicodeDecodeError as exc:
        raise Aedat3FormatError(f"{path} is not a text labels file (byte {exc.start} is not UTF-8).") from None
    labels, notes = disjoint_intervals(rows)
    if notes:
        log.warning("%s: %s", Path(path).name, "; ".join(notes))
    return labels


def disjoint_intervals(rows: list[tuple[int, LabelInterval]]) -> tuple[list[LabelInterval], list[str]]:
    """``(row number, interval)`` pairs sorted by start, each end clipped to the next start; what was changed,
    one note per row (an interval left empty by the clip is dropped)."""
    notes = []
    if any(a[1].start_us > b[1].start_us for a, b in zip(rows, rows[1:], strict=False)):
        notes.append("rows out of time order, sorted")
    ordered = sorted(rows, key=lambda r: (r[1].start_us, r[0]))
    out = []
    for i, (row, lab) in enumerate(ordered):
        end = lab.end_us
        if i + 1 < len(ordered) and end > ordered[i + 1][1].start_us:
            end = ordered[i + 1][1].start_us
            notes.append(f"row {row} (class {lab.class_id + 1}) ends {(lab.end_us - end) / 1e3:,.1f} ms after the "
                         f"next interval starts (row {ordered[i + 1][0]}), clipped to that start")
        if end <= lab.start_us:
            notes.append(f"row {row} (class {lab.class_id + 1}) "
                         f"{'ends before it starts' if lab.end_us < lab.start_us else 'is empty'}, dropped")
            continue
        out.append(LabelInterval(lab.class_id, lab.start_us, end))
    return out, notes


def write_labels_csv(path: str | Path, labels: list[LabelInterval], t0_us: int = 0) -> None:
    """Write 0-based intervals as DVS128 Gesture's CSV (1-based classes, absolute µs = rebased + t0)."""
    with open(path, "w", newline="") as f:
        f.write("class,startTime_usec,endTime_usec\n")
        for lab in labels:
            f.write(f"{lab.class_id + 1},{lab.start_us + t0_us},{lab.end_us + t0_us}\n")
