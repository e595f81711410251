"""Write data/t2m-sample.grib2, the small GRIB file the notebooks open.

The field is synthetic: a plausible 2 metre temperature for 15 January 2024 (cold northern
continents, warm southern ones, a daily cycle that follows the sun, a few travelling waves),
on a 2.5 degree global regular latitude-longitude grid at 00, 06, 12 and 18 UTC. It is made
from formulas alone (no random numbers), so running this script again gives the same file.

Run it with the session's Python: ``python make_sample_data.py`` (it needs numpy, eccodes,
matplotlib and cartopy; ecCodes' GRIB samples come with the eccodes package, and the picture of
the world that places the continents comes with cartopy).
"""

from __future__ import annotations

from pathlib import Path

import cartopy
import eccodes
import matplotlib.image
import numpy as np

OUTPUT = Path(__file__).resolve().parent / "data" / "t2m-sample.grib2"
STEP_DEGREES = 2.5
DATE = 20240115
HOURS = (0, 6, 12, 18)
# 12 bits keep every value to about 0.02 K here, and a field to about 16 KB.
BITS_PER_VALUE = 12


def land_fraction(lat: np.ndarray, lon: np.ndarray, box_degrees: float) -> np.ndarray:
    """The share of land (0 to 1) in a box of ``box_degrees`` around each grid point, from the
    Natural Earth picture of the world that comes with cartopy (the one ``ax.stock_img()``
    draws): sea is where it is blue."""
    picture = Path(cartopy.config["repo_data_dir"]) / "raster" / "natural_earth"
    rgb = matplotlib.image.imread(picture / "50-natural-earth-1-downsampled.png")[..., :3]
    land = ~((rgb[..., 2] > rgb[..., 0] + 0.08) & (rgb[..., 2] > rgb[..., 1] - 0.02))
    rows, cols = land.shape  # north to south, 180 W to 180 E
    # A box average of the land pixels, with the longitudes wrapping round.
    half = round(box_degrees / 2 * cols / 360.0)
    padded = np.pad(land.astype(float), ((half, half), (0, 0)), mode="edge")
    padded = np.pad(padded, ((0, 0), (half, half)), mode="wrap")
    box = (
        sum(
            padded[i : i + rows, j : j + cols]
            for i in range(2 * half + 1)
            for j in range(2 * half + 1)
        )
        / (2 * half + 1) ** 2
    )
    row = np.clip(np.round((90.0 - lat) / 180.0 * rows - 0.5).astype(int), 0, rows - 1)
    col = np.round(((lon + 180.0) % 360.0) / 360.0 * cols - 0.5).astype(int) % cols
    return np.asarray(box[row[:, np.newaxis], col[np.newaxis, :]])


def temperature(
    lat: np.ndarray, lon: np.ndarray, land: np.ndarray, inland: np.ndarray, hour: int
) -> np.ndarray:
    """2 metre temperature in kelvin at ``hour`` UTC on the grid ``lat`` x ``lon`` (degrees);
    ``land`` is the share of land in each grid box, ``inland`` the share in a wide box around it
    (the heart of a continent: 1, a coast or an island: less)."""
    phi = np.deg2rad(lat)[:, np.newaxis]
    lam = np.deg2rad(lon)[np.newaxis, :]
    lat2 = lat[:, np.newaxis]
    north = lat2 >= 0
    sin2 = np.sin(phi) ** 2
    # Over the sea in January: about 28 C in the tropics, near freezing at 60 S, and sea ice,
    # colder still, north of 70 N.
    sea = np.where(north, 301.0 - 40.0 * sin2, 301.0 - 38.0 * sin2)
    sea -= 20.0 * np.clip((lat2 - 70.0) / 20.0, 0.0, None)
    # Land: cold northern continents in winter, hot southern ones in summer (most of all far
    # from the sea), the high plateau of Antarctica.
    continents = np.where(north, -30.0 * sin2, 8.0 * np.exp(-(((lat2 + 25.0) / 15.0) ** 2)))
    continents -= 20.0 * np.clip((-lat2 - 65.0) / 10.0, 0.0, 1.0)
    # Weather: wave trains along the storm tracks, moving east through the day.
    moving = lam - np.deg2rad(10.0) * hour / 6.0
    waves = 4.0 * np.sin(5.0 * moving) * np.exp(-(((lat2 - 45.0) / 12.0) ** 2))
    waves += 2.5 * np.sin(4.0 * moving + 2.0) * np.exp(-(((lat2 + 50.0) / 10.0) ** 2))
    # The daily cycle: warmest at 14 h local solar time, strongest on land where the sun is high
    # (near 21 S in January).
    local_hour = (hour + lon[np.newaxis, :] / 15.0) % 24.0
    sun = np.clip(np.cos(phi + np.deg2rad(21.0)), 0.0, None)
    daily = (1.0 + 6.0 * land) * sun * np.cos(2.0 * np.pi * (local_hour - 14.0) / 24.0)
    return sea + land * inland * continents + waves + daily


def main() -> None:
    lat = np.arange(90.0, -90.0 - STEP_DEGREES / 2, -STEP_DEGREES)  # north to south
    lon = np.arange(0.0, 360.0, STEP_DEGREES)
    land = land_fraction(lat, lon, STEP_DEGREES)
    inland = land_fraction(lat, lon, 20.0)
    OUTPUT.parent.mkdir(exist_ok=True)
    with OUTPUT.open("wb") as out:
        for hour in HOURS:
            gid = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
            try:
                for key, value in (
                    ("centre", "ecmf"),
                    ("dataDate", DATE),
                    ("dataTime", hour * 100),
                    ("typeOfProcessedData", "an"),
                    ("paramId", 167),  # 2 metre temperature, shortName 2t
                    ("Ni", lon.size),
                    ("Nj", lat.size),
                    ("latitudeOfFirstGridPointInDegrees", float(lat[0])),
                    ("longitudeOfFirstGridPointInDegrees", float(lon[0])),
                    ("latitudeOfLastGridPointInDegrees", float(lat[-1])),
                    ("longitudeOfLastGridPointInDegrees", float(lon[-1])),
                    ("iDirectionIncrementInDegrees", STEP_DEGREES),
                    ("jDirectionIncrementInDegrees", STEP_DEGREES),
                    ("jScansPositively", 0),
                    ("bitsPerValue", BITS_PER_VALUE),
                ):
                    eccodes.codes_set(gid, key, value)
                values = temperature(lat, lon, land, inland, hour)
                eccodes.codes_set_values(gid, values.ravel())
                eccodes.codes_write(gid, out)
            finally:
                eccodes.codes_release(gid)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
