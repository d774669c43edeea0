"""A synthetic store seen by a ceiling depth camera, with the ground truth of every person.

The world frame is the store's own metres (x, y on the floor, z up). A scene holds the floor,
shelves and a kiosk (static boxes), floor markers for calibration, and people (an ellipsoid
body, shoulders and head) who walk between waypoints, stop, and step round each other. Depth
images are ray-cast exactly like a RealSense z16 stream (z distance in depth units), with
depth noise growing with z squared, random dropouts, shadow holes at depth edges and a
persistent dead patch. Nothing here does I/O; ``edge.sources`` feeds these images through
``rs.software_device``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edge.geometry import GeoAnchor, Intrinsics

# Sensor presets: D435-like at 640x480, L515-like at 1024x768.
RESOLUTIONS: dict[str, Intrinsics] = {
    "640x480": Intrinsics(640, 480, 383.0, 383.0, 319.5, 239.5),
    "1024x768": Intrinsics(1024, 768, 730.0, 730.0, 511.5, 383.5),
}
DEPTH_SCALE = 0.001  # metres per z16 unit
FloatArray = np.ndarray


def parse_resolution(text: str) -> Intrinsics:
    if text not in RESOLUTIONS:
        msg = f"resolution must be one of {', '.join(RESOLUTIONS)}"
        raise ValueError(msg)
    return RESOLUTIONS[text]


@dataclass(frozen=True)
class CameraPose:
    """Camera centre in store metres and its rotation (columns: camera x, y, z in the world)."""

    position: tuple[float, float, float]
    rotation: tuple[tuple[float, ...], ...]

    @classmethod
    def looking_down(cls, x: float, y: float, height: float, tilt_deg: float = 20.0,
                     yaw_deg: float = 0.0) -> CameraPose:
        """Ceiling mount: looking straight down, tilted ``tilt_deg`` towards +y rotated by yaw."""
        t, w = math.radians(tilt_deg), math.radians(yaw_deg)
        fwd = np.array([0.0, math.sin(t), -math.cos(t)])
        right = np.array([1.0, 0.0, 0.0])
        rz = np.array([[math.cos(w), -math.sin(w), 0], [math.sin(w), math.cos(w), 0], [0, 0, 1]])
        fwd, right = rz @ fwd, rz @ right
        down = np.cross(fwd, right)
        rot = np.stack([right, down, fwd], axis=1)
        return cls((x, y, height), tuple(tuple(float(v) for v in row) for row in rot))

    @property
    def r(self) -> FloatArray:
        return np.asarray(self.rotation, dtype=np.float64)

    @property
    def c(self) -> FloatArray:
        return np.asarray(self.position, dtype=np.float64)

    def world_to_camera(self, pts: FloatArray) -> FloatArray:
        return (np.asarray(pts, dtype=np.float64) - self.c) @ self.r


@dataclass(frozen=True)
class Box:
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]


@dataclass
class PersonSpec:
    height: float
    speed: float
    waypoints: list[tuple[float, float]]
    stops_s: list[float]  # how long to stand at each waypoint


@dataclass
class Truth:
    """Ground truth for one frame: positions (N, 2) store metres, headings (N,), heights (N,)."""

    positions: FloatArray
    headings: FloatArray
    heights: FloatArray
    leans: FloatArray | None = None  # (N, 2) head offset from the feet, world metres


@dataclass
class Scene:
    """The synthetic store around one camera."""

    intrinsics: Intrinsics
    pose: CameraPose
    walk_lo: tuple[float, float]
    walk_hi: tuple[float, float]
    boxes: list[Box]
    markers: dict[str, tuple[float, float]]
    kiosks: dict[str, tuple[float, float]]
    people: list[PersonSpec]
    anchor: GeoAnchor
    store_id: str = "edge-store-1"
    country: str = "GB"
    fps: float = 30.0
    seed: int = 0
    track: FloatArray = field(default_factory=lambda: np.zeros((0, 0, 2)), repr=False)
    _headings: FloatArray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    _leans: FloatArray = field(default_factory=lambda: np.zeros((0, 0, 2)), repr=False)

    @property
    def n_frames(self) -> int:
        return int(self.track.shape[0])

    def truth(self, i: int) -> Truth:
        j = min(i, self.n_frames - 1)
        return Truth(self.track[j].copy(), self._headings[j].copy(),
                     np.array([p.height for p in self.people]), self._leans[j].copy())

    def simulate(self, seconds: float) -> None:
        n = int(round(seconds * self.fps))
        self.track, self._headings, self._leans = simulate_walks(self, n)


def default_scene(resolution: str = "640x480", people: int = 5, seed: int = 0,
                  seconds: float = 20.0, fps: float = 30.0) -> Scene:
    """A 3 m x 3.4 m stretch of aisle between two shelves, a kiosk in a gap of the left shelf,
    ``people`` walkers.

    The camera hangs at 4.0 m over (12, 20) looking down with a 15 degree tilt and a 10 degree
    yaw, so the
    floor frame and the store frame differ by a real rotation and translation.
    """
    intr = parse_resolution(resolution)
    cx, cy = 12.0, 20.0
    pose = CameraPose.looking_down(cx, cy, 4.0, tilt_deg=15.0, yaw_deg=10.0)
    boxes = [
        Box((cx - 2.6, cy - 3.0, 0.0), (cx - 1.9, cy + 0.7, 1.9)),  # shelf, left, near part
        Box((cx - 2.6, cy + 1.5, 0.0), (cx - 1.9, cy + 5.0, 1.9)),  # shelf, left, far part
        Box((cx + 1.9, cy - 3.0, 0.0), (cx + 2.6, cy + 5.0, 1.9)),  # shelf, right
        Box((cx - 2.4, cy + 0.8, 0.0), (cx - 1.95, cy + 1.4, 1.25)),  # the kiosk, in the gap
    ]
    markers = {  # calibration dots on the floor (store metres)
        "m1": (cx - 1.2, cy - 0.8), "m2": (cx + 1.2, cy - 0.6),
        "m3": (cx + 1.1, cy + 2.8), "m4": (cx - 1.0, cy + 2.5),
    }
    kiosks = {"k1": (cx - 1.6, cy + 1.1)}  # where a shopper stands to use it
    scene = Scene(intr, pose, (cx - 1.6, cy - 1.0), (cx + 1.6, cy + 3.4), boxes, markers,
                  kiosks, [], GeoAnchor(51.501, -0.142, 30.0), fps=fps, seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(people):
        n_wp = 40
        wps = [(float(rng.uniform(scene.walk_lo[0], scene.walk_hi[0])),
                float(rng.uniform(scene.walk_lo[1], scene.walk_hi[1]))) for _ in range(n_wp)]
        stops = [float(rng.uniform(1.0, 4.0)) if rng.random() < 0.35 else 0.0 for _ in range(n_wp)]
        scene.people.append(PersonSpec(float(rng.uniform(1.55, 1.95)),
                                       float(rng.uniform(0.9, 1.4)), wps, stops))
    scene.simulate(seconds)
    return scene


def checkin_scene(resolution: str = "640x480", seconds: float = 40.0, fps: float = 15.0) -> Scene:
    """One shopper who stands at the kiosk, then walks to a shelf spot and stays there;
    a second shopper wanders. Used by the kiosk check-in integration test and the demo."""
    scene = default_scene(resolution, people=0, seed=7, seconds=0.1, fps=fps)
    kx, ky = scene.kiosks["k1"]
    cx, cy = scene.pose.position[0], scene.pose.position[1]
    shelf_spot = (cx + 1.3, cy + 0.5)
    scene.people = [
        PersonSpec(1.78, 1.1, [(kx + 0.15, ky), shelf_spot, (shelf_spot[0], shelf_spot[1] + 0.01)],
                   [12.0, 3600.0, 3600.0]),
        PersonSpec(1.65, 1.0, [(cx - 0.8, cy - 0.6), (cx - 0.6, cy + 1.5), (cx + 0.2, cy - 0.7),
                               (cx - 0.9, cy + 1.8)] * 20, [2.0, 1.0, 0.0, 3.0] * 20),
    ]
    scene.simulate(seconds)
    return scene


SHELF_SPOT_OFFSET = (1.3, 0.5)  # checkin_scene's stopping spot relative to the camera nadir


def simulate_walks(scene: Scene, n_frames: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Walk everyone through their waypoints with stops, keeping people >= 0.5 m apart.

    Heads are not exactly over the feet: each person leans a little (forward 0-6 cm, sideways
    +-3 cm) and sways sideways by 3 cm at step frequency while walking."""
    n = len(scene.people)
    lean_rng = np.random.default_rng(scene.seed + 101)
    lean_fwd = lean_rng.uniform(0.0, 0.06, n)
    lean_side = lean_rng.uniform(-0.03, 0.03, n)
    leans = np.zeros((n_frames, n, 2))
    dt = 1.0 / scene.fps
    pos = np.array([p.waypoints[0] for p in scene.people], dtype=np.float64).reshape(n, 2)
    heading = np.zeros(n)
    target = np.ones(n, dtype=int)
    wait = np.array([p.stops_s[0] for p in scene.people]) if n else np.zeros(0)
    # spread out any starting points that collide
    for _ in range(50):
        moved = False
        for i in range(n):
            for j in range(i + 1, n):
                d = pos[i] - pos[j]
                dist = float(np.hypot(*d))
                if dist < 0.6:
                    push = (d / dist if dist > 1e-6 else np.array([1.0, 0.0])) * (0.6 - dist) / 2
                    pos[i] += push
                    pos[j] -= push
                    moved = True
        if not moved:
            break
    track = np.zeros((n_frames, n, 2))
    heads = np.zeros((n_frames, n))
    lo, hi = np.array(scene.walk_lo), np.array(scene.walk_hi)
    for f in range(n_frames):
        vel = np.zeros((n, 2))
        for i, p in enumerate(scene.people):
            if wait[i] > 0:
                wait[i] -= dt
                continue
            wp = np.array(p.waypoints[target[i] % len(p.waypoints)])
            d = wp - pos[i]
            dist = float(np.hypot(*d))
            if dist < 0.1:
                wait[i] = p.stops_s[target[i] % len(p.stops_s)]
                target[i] += 1
                continue
            vel[i] = d / dist * min(p.speed, dist / dt)
        # step round each other: repel within 0.9 m, sideways as well as back
        for i in range(n):
            for j in range(n):
                if i == j:
                    continue
                d = pos[i] - pos[j]
                dist = float(np.hypot(*d))
                if dist < 0.9 and dist > 1e-6:
                    u = d / dist
                    side = np.array([-u[1], u[0]])
                    k = (0.9 - dist) / 0.9
                    vel[i] += (u * 1.2 + side * 0.6) * k
        new = np.clip(pos + vel * dt, lo, hi)
        # hard constraint: bodies do not overlap
        for i in range(n):
            for j in range(i + 1, n):
                d = new[i] - new[j]
                dist = float(np.hypot(*d))
                if dist < 0.5:
                    u = d / dist if dist > 1e-6 else np.array([1.0, 0.0])
                    new[i] += u * (0.5 - dist) / 2
                    new[j] -= u * (0.5 - dist) / 2
        step = new - pos
        moving = np.hypot(step[:, 0], step[:, 1]) > 0.2 * dt
        heading = np.where(moving, np.arctan2(step[:, 1], step[:, 0]), heading)
        pos = new
        track[f] = pos
        heads[f] = heading
        sway = np.where(moving, 0.03 * math.sin(2 * math.pi * 0.9 * f * dt), 0.0)
        fwd = np.stack([np.cos(heading), np.sin(heading)], axis=1)
        right = np.stack([np.sin(heading), -np.cos(heading)], axis=1)
        leans[f] = fwd * lean_fwd[:, None] + right * (lean_side + sway)[:, None]
    return track, heads, leans


# ----------------------------------------------------------------------------------- render

@dataclass
class Renderer:
    """Ray-casts a scene into z16 depth images, the static part once, people per frame."""

    scene: Scene
    noise: bool = True
    rng_seed: int = 0
    _dirs: FloatArray = field(init=False, repr=False)
    _static: FloatArray = field(init=False, repr=False)
    _noise_bank: list[FloatArray] = field(init=False, repr=False)
    _drop_bank: list[FloatArray] = field(init=False, repr=False)
    _dead: FloatArray = field(init=False, repr=False)
    _frame: int = 0
    last_depth_m: FloatArray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        intr = self.scene.intrinsics
        rx, ry = intr.ray_grid(1)
        cam = np.stack([rx, ry, np.ones_like(rx)], axis=-1)
        self._dirs = (cam @ self.scene.pose.r.T).astype(np.float32)  # world direction, cam z = 1
        self._static = self._cast_static()
        rng = np.random.default_rng(self.rng_seed)
        shape = (intr.height, intr.width)
        self._noise_bank = [rng.standard_normal(shape).astype(np.float32) for _ in range(6)]
        self._drop_bank = [rng.random(shape) < 0.01 for _ in range(6)]
        dead = np.zeros(shape, dtype=bool)
        h, w = shape
        dead[int(h * 0.62):int(h * 0.66), int(w * 0.30):int(w * 0.36)] = True  # a shiny floor patch
        self._dead = dead

    def _cast_static(self) -> FloatArray:
        c = self.scene.pose.c
        d = self._dirs
        depth = np.full(d.shape[:2], np.inf, dtype=np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            s_floor = np.where(d[..., 2] < -1e-6, -c[2] / d[..., 2], np.inf)
        depth = np.minimum(depth, s_floor)
        for box in self.scene.boxes:
            depth = np.minimum(depth, _ray_box(c, d, box))
        return depth.astype(np.float32)

    def person_rois(self, truth: Truth) -> list[tuple[int, int, int, int]]:
        intr = self.scene.intrinsics
        rois = []
        for (x, y), h in zip(truth.positions, truth.heights, strict=True):
            corners = np.array([[x + dx, y + dy, z] for dx in (-0.4, 0.4) for dy in (-0.4, 0.4)
                                for z in (0.0, h + 0.05)])
            cam = self.scene.pose.world_to_camera(corners)
            if np.any(cam[:, 2] <= 0.05):
                rois.append((0, intr.width, 0, intr.height))
                continue
            u = cam[:, 0] / cam[:, 2] * intr.fx + intr.ppx
            v = cam[:, 1] / cam[:, 2] * intr.fy + intr.ppy
            u0, u1 = max(int(u.min()) - 1, 0), min(int(u.max()) + 2, intr.width)
            v0, v1 = max(int(v.min()) - 1, 0), min(int(v.max()) + 2, intr.height)
            rois.append((u0, u1, v0, v1))
        return rois

    def depth_m(self, truth: Truth) -> FloatArray:
        """Noise-free z distance (metres, inf where nothing is hit) for one frame."""
        depth = self._static.copy()
        c = self.scene.pose.c
        leans = truth.leans if truth.leans is not None else np.zeros_like(truth.positions)
        for (x, y), yaw, h, lean, (u0, u1, v0, v1) in zip(truth.positions, truth.headings,
                                                           truth.heights, leans,
                                                           self.person_rois(truth), strict=True):
            if u1 <= u0 or v1 <= v0:
                continue
            d = self._dirs[v0:v1, u0:u1]
            roi = depth[v0:v1, u0:u1]
            for center, axes in _person_parts(x, y, h, lean):
                roi = np.minimum(roi, _ray_ellipsoid(c, d, center, axes, yaw))
            depth[v0:v1, u0:u1] = roi
        return depth

    def render(self, truth: Truth) -> FloatArray:
        """One z16 depth image (uint16, depth units of ``DEPTH_SCALE``) with sensor artefacts."""
        depth = self.depth_m(truth)
        self.last_depth_m = depth  # noise-free, for ground-truth visibility
        k = self._frame % len(self._noise_bank)
        self._frame += 1
        if self.noise:
            depth = depth + self._noise_bank[k] * (0.0012 * depth * depth)
            # stereo shadow: invalid pixels just right of a depth edge (near in front of far)
            edge = np.zeros(depth.shape, dtype=bool)
            jump = depth[:, 1:] - depth[:, :-1]
            edge[:, 1:] = jump > 0.25
            edge[:, 2:] |= edge[:, 1:-1]
            depth[edge | self._drop_bank[(k + 3) % len(self._drop_bank)] | self._dead] = 0.0
        depth[~np.isfinite(depth) | (depth > 10.0)] = 0.0
        return np.round(depth / DEPTH_SCALE).astype(np.uint16)


def _person_parts(x: float, y: float, h: float, lean: FloatArray
                  ) -> list[tuple[FloatArray, FloatArray]]:
    """(centre, semi-axes in the person's right/forward/up frame) for body, shoulders, head;
    ``lean`` shifts the shoulders by 70 % and the head fully."""
    lx, ly = float(lean[0]), float(lean[1])
    return [
        (np.array([x + 0.3 * lx, y + 0.3 * ly, 0.42 * h]), np.array([0.17, 0.12, 0.42 * h])),
        (np.array([x + 0.7 * lx, y + 0.7 * ly, 0.80 * h]), np.array([0.23, 0.11, 0.085 * h])),
        (np.array([x + lx, y + ly, h - 0.11]), np.array([0.08, 0.095, 0.11])),
    ]


def _ray_ellipsoid(c: FloatArray, d: FloatArray, center: FloatArray, axes: FloatArray,
                   yaw: float) -> FloatArray:
    """Ray parameter of the first hit of rays (origin c, directions d[..., 3]) on an ellipsoid."""
    # the person's forward axis is the heading; right is heading - 90 degrees
    ca, sa = math.cos(yaw), math.sin(yaw)
    # world -> person: right = (sa, -ca), forward = (ca, sa)
    o = c - center
    o_l = np.array([o[0] * sa - o[1] * ca, o[0] * ca + o[1] * sa, o[2]]) / axes
    dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
    lx = (dx * sa - dy * ca) / axes[0]
    ly = (dx * ca + dy * sa) / axes[1]
    lz = dz / axes[2]
    a = lx * lx + ly * ly + lz * lz
    b = 2.0 * (o_l[0] * lx + o_l[1] * ly + o_l[2] * lz)
    cc = float(o_l @ o_l) - 1.0
    disc = b * b - 4.0 * a * cc
    hit = disc >= 0
    s = np.full(a.shape, np.inf, dtype=np.float32)
    sq = np.sqrt(np.where(hit, disc, 0.0))
    s_hit = (-b - sq) / (2.0 * a)
    ok = hit & (s_hit > 0)
    s[ok] = s_hit[ok]
    return s


def _ray_box(c: FloatArray, d: FloatArray, box: Box) -> FloatArray:
    lo, hi = np.asarray(box.lo), np.asarray(box.hi)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (lo - c) / d
        t2 = (hi - c) / d
    tmin = np.nanmax(np.minimum(t1, t2), axis=-1)
    tmax = np.nanmin(np.maximum(t1, t2), axis=-1)
    hit = (tmax >= tmin) & (tmax > 0)
    return np.where(hit, np.maximum(tmin, 0.0), np.inf).astype(np.float32)


def visible_mask(scene: Scene, renderer: Renderer, truth: Truth, depth_m: FloatArray,
                 margin_m: float = 0.2) -> FloatArray:
    """Which people the box is expected to see: the head's centre at least ``margin_m`` (at
    head height) inside the image border, the head not hidden, and the body's middle in view."""
    intr = scene.intrinsics
    head_dist = max(scene.pose.position[2] - 1.7, 0.5)
    margin_px = int(round(margin_m * intr.fx / head_dist))
    out = np.zeros(len(truth.positions), dtype=bool)
    for i, ((x, y), h) in enumerate(zip(truth.positions, truth.heights, strict=True)):
        lx, ly = (truth.leans[i] if truth.leans is not None else (0.0, 0.0))
        cam = scene.pose.world_to_camera(np.array([[x + lx, y + ly, h - 0.05]]))[0]
        if cam[2] <= 0:
            continue
        u = cam[0] / cam[2] * intr.fx + intr.ppx
        v = cam[1] / cam[2] * intr.fy + intr.ppy
        inside = (margin_px <= u < intr.width - margin_px
                  and margin_px <= v < intr.height - margin_px)
        if not inside:
            continue
        # also require the feet region to be in view: the pipeline places people on the floor
        foot = scene.pose.world_to_camera(np.array([[x, y, 0.9]]))[0]
        fu = foot[0] / foot[2] * intr.fx + intr.ppx
        fv = foot[1] / foot[2] * intr.fy + intr.ppy
        if not (0 <= fu < intr.width and 0 <= fv < intr.height):
            continue
        z = depth_m[int(v), int(u)]
        out[i] = bool(abs(z - cam[2]) < 0.12)
    return out


def shelf_products(scene: Scene, *, first_sku: int = 90_000, every_m: float = 1.0
                   ) -> list[tuple[int, str, str, float, float]]:
    """Products on the synthetic shelves' faces as (sku, segment, name, latitude, longitude),
    one every ``every_m`` along each shelf in view, so a demo run from the synthetic camera
    (`instore demo --camera`) can put a catalog where its shoppers walk."""
    segments = ("coffee", "tea", "snacks", "bakery", "dairy")
    cx, cy = scene.pose.position[0], scene.pose.position[1]
    out = []
    sku = first_sku
    for face_x in (cx - 1.9, cx + 1.9):
        for k, y in enumerate(np.arange(cy - 0.5, cy + 3.0, every_m)):
            lat, lon = scene.anchor.to_latlon(face_x, float(y))
            seg = segments[(sku - first_sku) % len(segments)]
            out.append((sku, seg, f"{seg.title()} #{k + 1}", lat, lon))
            sku += 1
    return out
