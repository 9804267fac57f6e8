"""numpy events to dv-processing EventStores, for the writers and the hooks that take stores (the recorder)."""

from __future__ import annotations

import numpy as np


def to_event_store(events: np.ndarray):
    """A dv-processing EventStore holding ``events`` (push_back: dv has no numpy constructor). A store takes events
    in time order only, so one stamped earlier than the one before it (a corrupt packet from a peer) is kept at that
    one's time, as ``EventSource.batches`` keeps it."""
    import dv_processing as dv

    store = dv.EventStore()
    push = store.push_back
    times = np.maximum.accumulate(events["timestamp"])
    for t, x, y, p in zip(times.tolist(), events["x"].tolist(), events["y"].tolist(),
                          events["polarity"].astype(bool).tolist(), strict=True):
        push(t, x, y, p)
    return store
