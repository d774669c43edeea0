"""People in a depth image: foreground above the floor, blobs, one detection per head.

Per frame (all numpy/OpenCV, on a strided grid of roughly 320 pixels across):

1. metres from z16, height above the fitted floor plane for every pixel (one multiply-add
   with a precomputed per-pixel ``normal . ray``);
2. foreground = valid depth, nearer than the empty-floor background by a margin, and between
   a person's lowest and highest plausible height; a morphological open removes speckle;
3. blobs (connected components) with their visible surface area in square metres, too small
   ones dropped (a bag, a cart edge);
4. heads = local maxima of the smoothed height map over a window of about a head-and-shoulders
   width, at least ``min_head_m`` above the floor; peaks closer than ``min_separation_m`` on
   the floor are merged (the higher wins). Two people in one blob keep two heads;
   Heads within ``border_m`` of the image border are skipped: the covered zone is the
   image's interior, where a whole head is seen;
5. each head's floor position = mean floor (x, y) of the blob's points within ``head_depth_m``
   of the top of the head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.geometry import FloorFrame, Intrinsics

FloatArray = np.ndarray


@dataclass(frozen=True)
class DetectorParams:
    target_width: int = 320          # detection grid width (pixels); stride = width // this
    fg_margin_m: float = 0.10        # nearer than the background by at least this
    min_height_m: float = 0.35       # foreground band above the floor
    max_height_m: float = 2.30
    min_head_m: float = 1.0          # a head is at least this high
    min_blob_m2: float = 0.05        # visible surface of a person's blob
    min_separation_m: float = 0.38   # two heads are at least this far apart on the floor
    head_depth_m: float = 0.12       # points this far below the top of the head place it
    head_radius_m: float = 0.16
    peak_window_m: float = 0.30      # local-maximum window, at head height
    border_m: float = 0.0            # heads this close to the image border are skipped


@dataclass
class Detections:
    floor_xy: FloatArray             # (N, 2) floor metres
    heights: FloatArray              # (N,) metres above the floor
    pixels: FloatArray               # (N, 2) full-resolution (u, v) of each head
    fg_mask: FloatArray | None = None  # detection-grid foreground (for `edge view`)
    height_map: FloatArray | None = None

    def __len__(self) -> int:
        return len(self.heights)


def _empty(fg: FloatArray | None = None, hm: FloatArray | None = None) -> Detections:
    return Detections(np.zeros((0, 2)), np.zeros(0), np.zeros((0, 2)), fg, hm)


@dataclass
class Detector:
    """Stateless per frame once built from the calibration (intrinsics, floor, background)."""

    intrinsics: Intrinsics
    floor: FloorFrame
    background_m: FloatArray | None = None  # full-resolution empty-floor depth, metres (0 = hole)
    params: DetectorParams = field(default_factory=DetectorParams)

    def __post_init__(self) -> None:
        p = self.params
        intr = self.intrinsics
        self.stride = max(1, intr.width // p.target_width)
        rx, ry = intr.ray_grid(self.stride)
        self._rx, self._ry = rx, ry
        n = self.floor.plane.n
        self._ndot = (rx * n[0] + ry * n[1] + n[2]).astype(np.float32)
        self._offset = np.float32(self.floor.plane.offset)
        # where the floor itself is along each ray (used where the background has holes)
        with np.errstate(divide="ignore"):
            floor_depth = np.where(self._ndot < -1e-6, -self._offset / self._ndot, 0.0)
        floor_depth = floor_depth.astype(np.float32)
        if self.background_m is not None:
            bg = np.asarray(self.background_m, dtype=np.float32)[::self.stride, ::self.stride]
            bg = bg[: rx.shape[0], : rx.shape[1]]
            bg = np.where(bg > 0, bg, floor_depth)
            # a hole in the background over the floor must not hide a person standing there
        else:
            bg = floor_depth
        self._bg_limit = np.where(bg > 0, bg - p.fg_margin_m, np.float32(np.inf)).astype(np.float32)
        head_dist = max(self.floor.camera_height - 1.7, 0.5)
        px_per_m = intr.fx / self.stride / head_dist
        k = max(3, int(round(p.peak_window_m * px_per_m)) | 1)
        self._peak_kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
        self._open_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._head_r_px = max(2, int(round(p.head_radius_m * px_per_m)))
        self._border_px = int(round(p.border_m * px_per_m))
        # square metres seen by one grid pixel at depth d: (d * stride)^2 / (fx * fy)
        self._area_k = np.float32(self.stride * self.stride / (intr.fx * intr.fy))

    def in_view(self, floor_xy: FloatArray, head_m: float = 1.7) -> bool:
        """Would a head over this floor point be inside the detection zone of the image?"""
        cam = self.floor.to_camera(np.array([[floor_xy[0], floor_xy[1], head_m]]))[0]
        if cam[2] <= 0.05:
            return False
        intr = self.intrinsics
        u = (cam[0] / cam[2] * intr.fx + intr.ppx) / self.stride
        v = (cam[1] / cam[2] * intr.fy + intr.ppy) / self.stride
        gh, gw = self._ndot.shape
        b = self._border_px
        return bool(b <= v < gh - b and b <= u < gw - b)

    @property
    def grid_shape(self) -> tuple[int, int]:
        return self._ndot.shape  # type: ignore[return-value]

    def detect(self, depth_u16: FloatArray, depth_scale: float, *, keep_maps: bool = False
               ) -> Detections:
        p = self.params
        s = self.stride
        gh, gw = self._ndot.shape
        d = depth_u16[::s, ::s][:gh, :gw].astype(np.float32) * np.float32(depth_scale)
        h = d * self._ndot + self._offset
        fg = (d > 0) & (d < self._bg_limit) & (h > p.min_height_m) & (h < p.max_height_m)
        fg8 = cv2.morphologyEx(fg.view(np.uint8), cv2.MORPH_OPEN, self._open_kernel)
        n_labels, labels = cv2.connectedComponents(fg8, connectivity=8, ltype=cv2.CV_32S)
        if n_labels <= 1:
            return _empty(fg8 if keep_maps else None, None)
        hm = np.where(fg8 > 0, h, np.float32(0.0)).astype(np.float32)
        hb = cv2.blur(hm, (3, 3))
        dil = cv2.dilate(hb, self._peak_kernel)
        peaks = (hb >= dil) & (hb > p.min_head_m) & (fg8 > 0)
        vs, us = np.nonzero(peaks)
        if len(vs) == 0:
            return _empty(fg8 if keep_maps else None, hm if keep_maps else None)
        area = np.bincount(labels.ravel(), weights=(d * d).ravel(),
                           minlength=n_labels).astype(np.float64) * float(self._area_k)
        lab = labels[vs, us]
        ok = area[lab] >= p.min_blob_m2
        vs, us, lab = vs[ok], us[ok], lab[ok]
        if len(vs) == 0:
            return _empty(fg8 if keep_maps else None, hm if keep_maps else None)
        ph = hb[vs, us]
        order = np.argsort(-ph)
        vs, us, lab, ph = vs[order], us[order], lab[order], ph[order]
        # floor position of each candidate peak, then non-maximum suppression on the floor
        dz = d[vs, us].astype(np.float64)
        cam = np.stack([self._rx[vs, us] * dz, self._ry[vs, us] * dz, dz], axis=-1)
        fxy = self.floor.to_floor(cam)[:, :2]
        keep: list[int] = []
        sep2 = p.min_separation_m ** 2
        for i in range(len(vs)):
            if keep:
                kk = np.asarray(keep)
                if np.min(np.sum((fxy[kk] - fxy[i]) ** 2, axis=1)) < sep2:
                    continue
            keep.append(i)
        # a head cut by the image border would be placed wrongly: after it has suppressed its
        # own shoulders and body in the step above, drop it
        b = self._border_px
        keep = [i for i in keep
                if b <= vs[i] < gh - b and b <= us[i] < gw - b]
        out_xy = np.zeros((len(keep), 2))
        out_h = np.zeros(len(keep))
        out_px = np.zeros((len(keep), 2))
        r = self._head_r_px
        for j, i in enumerate(keep):
            v, u = int(vs[i]), int(us[i])
            v0, v1, u0, u1 = max(v - r, 0), min(v + r + 1, gh), max(u - r, 0), min(u + r + 1, gw)
            win_h = hm[v0:v1, u0:u1]
            sel = (labels[v0:v1, u0:u1] == lab[i]) & (win_h > ph[i] - p.head_depth_m)
            if sel.sum() >= 2:
                wd = d[v0:v1, u0:u1][sel].astype(np.float64)
                pts = np.stack([self._rx[v0:v1, u0:u1][sel] * wd, self._ry[v0:v1, u0:u1][sel] * wd,
                                wd], axis=-1)
                f = self.floor.to_floor(pts)
                out_xy[j] = f[:, :2].mean(axis=0)
                out_h[j] = float(f[:, 2].max())
            else:
                out_xy[j] = fxy[i]
                out_h[j] = float(ph[i])
            out_px[j] = (u * s, v * s)
        return Detections(out_xy, out_h, out_px, fg8 if keep_maps else None,
                          hm if keep_maps else None)
