"""The installer's check image: depth in false colour, floor and foreground, tracks, kiosks.

Depth only: the picture is made from the depth image and the pipeline's state, never from a
colour camera.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.geometry import project


def annotate(depth_u16: np.ndarray, depth_scale: float, proc: object) -> np.ndarray:
    """BGR image: depth (near = warm), floor tinted green, foreground outlined, tracks with
    their ids and store positions, kiosks with their 1.5 m check-in circle."""
    cal = proc.calibration  # type: ignore[attr-defined]
    intr = cal.intr
    floor = cal.floor
    d = depth_u16.astype(np.float32) * depth_scale
    valid = d > 0
    cam_h = floor.camera_height
    norm = np.clip((cam_h + 0.5 - d) / (cam_h + 0.5) * 255.0, 0, 255).astype(np.uint8)
    img = cv2.applyColorMap(norm, cv2.COLORMAP_TURBO)
    img[~valid] = (0, 0, 0)
    # floor: height above the plane within 6 cm
    rx, ry = intr.ray_grid(1)
    n = floor.plane.n
    h = d * (rx * n[0] + ry * n[1] + n[2]) + floor.plane.offset
    on_floor = valid & (np.abs(h) < 0.06)
    img[on_floor] = (0.6 * img[on_floor] + 0.4 * np.array([60, 200, 60])).astype(np.uint8)
    dets = proc.last  # type: ignore[attr-defined]
    if dets is not None and dets.fg_mask is not None:
        fg = cv2.resize(dets.fg_mask * 255, (intr.width, intr.height),
                        interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(img, contours, -1, (255, 255, 255), 1)
    # kiosks and their check-in radius, drawn on the floor
    for kid in cal.kiosks:
        kxy = cal.kiosk_floor(kid)
        if kxy is None:
            continue
        ang = np.linspace(0, 2 * np.pi, 48)
        ring = np.stack([kxy[0] + 1.5 * np.cos(ang), kxy[1] + 1.5 * np.sin(ang)], axis=1)
        cam = floor.to_camera(ring)
        ok = cam[:, 2] > 0.05
        if ok.sum() > 2:
            u, v = project(intr, cam[ok])
            pts = np.stack([u, v], axis=1).astype(np.int32)
            cv2.polylines(img, [pts], False, (255, 0, 255), 1, cv2.LINE_AA)
        center = floor.to_camera(kxy[None])
        u, v = project(intr, center)
        cv2.drawMarker(img, (int(u[0]), int(v[0])), (255, 0, 255), cv2.MARKER_DIAMOND, 14, 2)
        cv2.putText(img, f"kiosk {kid}", (int(u[0]) + 8, int(v[0])), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, (255, 0, 255), 1, cv2.LINE_AA)
    for tr in proc.tracker.tracks:  # type: ignore[attr-defined]
        if not tr.confirmed:
            continue
        head = floor.to_camera(np.array([[tr.xy[0], tr.xy[1], 1.7]]))
        foot = floor.to_camera(np.array([[tr.xy[0], tr.xy[1], 0.0]]))
        (hu,), (hv,) = project(intr, head)
        (fu,), (fv,) = project(intr, foot)
        color = (0, 215, 255) if tr.uid else (255, 255, 255)
        cv2.line(img, (int(hu), int(hv)), (int(fu), int(fv)), color, 1, cv2.LINE_AA)
        cv2.circle(img, (int(fu), int(fv)), 6, color, 2, cv2.LINE_AA)
        x, y = cal.floor_to_store_xy(tr.xy)[0]
        label = f"#{tr.track_id}{' checked-in' if tr.uid else ''} ({x:.1f},{y:.1f})"
        cv2.putText(img, label, (int(hu) + 6, int(hv) - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, label, (int(hu) + 6, int(hv) - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    color, 1, cv2.LINE_AA)
    n_tracks = len([t for t in proc.tracker.tracks if t.confirmed])  # type: ignore[attr-defined]
    cv2.putText(img, f"camera {cam_h:.2f} m above floor  tracks {n_tracks}",
                (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return img
