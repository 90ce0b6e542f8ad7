"""Re-make the prediction pages' screenshots: ``make screenshots`` (or ``python tests/browser/screenshots.py DIR``).

Both tutorial models, trained into a temporary folder, deployed into a local cloud of this
process on free ports; each page opened in headless Chromium, the tutorial's row pasted,
Predict pressed, and the window (1000x800) saved as DIR/page-<model>.png once the answer shows.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from page_driver import PredictionPage, missing, start_chromium

WINDOW = (1000, 800)
MAX_BYTES = 150_000  # what the README and docs/ take per image
SHOTS = {"iris": "classification", "house-price": "regression"}


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "docs/images")
    if missing():
        print(f"{', '.join(missing())} missing: `make browser` installs them", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="l2c-screenshots-") as scratch:
        os.environ["L2C_STATE_DIR"] = str(Path(scratch) / "state")  # keys and Postman files stay out of the checkout
        return shoot(Path(scratch), out)


def shoot(scratch: Path, out: Path) -> int:
    from l2c.cloud import plan, stack
    from l2c.cloud.progress import Reporter
    from l2c.cloud.session import LOCAL, connect
    from l2c.local.cloud import LocalCloud, Ports
    from l2c.local.tutorial import TUTORIAL_BODIES
    from l2c.local.up import committed_local_api_key
    from l2c.training import ensure_trained

    models = scratch / "models"
    with LocalCloud(Ports.free(), models_dir=models) as cloud:
        session = connect(LOCAL, env=cloud.env)
        options = plan.DeployOptions(api_key_value=committed_local_api_key())
        for name in SHOTS:
            stack.deploy(name, ensure_trained(name, models), session=session, options=options, reporter=Reporter())
        driver = start_chromium(scratch / "profile", WINDOW)
        # The viewport itself 1000x800, whatever the headless window's frame takes.
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False},
        )
        try:
            out.mkdir(parents=True, exist_ok=True)
            for name, kind in SHOTS.items():
                page = PredictionPage(driver, cloud.page_url(name))
                page.paste_row(TUTORIAL_BODIES[name]["data"])
                shown = page.predict()
                if shown != kind:
                    print(f"{name}: the page shows {shown!r}, not an answer: {page.text('#result')}", file=sys.stderr)
                    return 1
                path = out / f"page-{name}.png"
                path.write_bytes(driver.get_screenshot_as_png())
                size = path.stat().st_size
                print(f"{path}: {size // 1000} kB ({page.text('#result .verdict')})")
                if size > MAX_BYTES:
                    print(f"{path} is over {MAX_BYTES // 1000} kB", file=sys.stderr)
                    return 1
        finally:
            driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
