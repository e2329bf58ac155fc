"""Encoder comparison probe: map a held-out scene with a frozen encoder and localise its test frames.

Usage: python bench/encoder_probe.py SCENE --encoder {xfeat|ace-random:0|ENC.pt} --out RESULT.json
       [--height 240] [--iterations 1500] [--batch 4096] [--head_channels 256] [--lr 5e-3]

A stand-in for glace-train + glace-eval, used to choose the default encoder (BENCHMARKS.md, Encoders)
while those were being written; same loss, simpler everything else:
- Map: frozen encoder features of every training image (no augmentation, no global features), one
  GlaceHead (1 block) trained with ACE's reprojection loss (L1 px, dyntanh with the circle schedule
  50 -> 1 px, invalid -> 10 m along the ray) on random cells, AdamW + OneCycle.
- Localise: OpenCV P3P-RANSAC over every cell (1000 iterations, threshold 10 px at 480 scaled to
  the image height), LM refinement on the inliers. Errors as in the reference (strict <).
"""
import argparse, json, time
from pathlib import Path
import cv2, numpy as np, torch
from glace_core.encoder_registry import resolve_encoder
from glace_core.head import GlaceHead
from glace_core.pretraining.data import load_scene, cell_centres
from glace_core.pretraining.loss import dyntanh_clamp
from glace_core.encoder import ACE_IMAGE_MEAN, ACE_IMAGE_STD

def encode(encoder, scene):
    feats = []
    with torch.no_grad():
        for i in range(len(scene)):
            img = (scene.images[i:i+1].float().unsqueeze(1) / 255 - ACE_IMAGE_MEAN) / ACE_IMAGE_STD
            feats.append(encoder(img))
    return torch.cat(feats)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scene"); ap.add_argument("--encoder", required=True); ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--iterations", type=int, default=1000); ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--head_channels", type=int, default=256); ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.manual_seed(0)
    t0 = time.time()
    enc = resolve_encoder(a.encoder)
    train = load_scene(Path(a.scene) / "train", a.height); test = load_scene(Path(a.scene) / "test", a.height)
    H, W = train.images.shape[-2:]
    F_tr = encode(enc, train)  # (N,C,h,w)
    N, C, h, w = F_tr.shape
    px = cell_centres(H, W)  # (2,h,w)
    feats = F_tr.permute(0, 2, 3, 1).reshape(-1, C)
    img_idx = torch.arange(N).repeat_interleave(h * w)
    pix = px.permute(1, 2, 0).reshape(-1, 2).repeat(N, 1)
    w2c = torch.linalg.inv(train.cam_to_world)[:, :3]
    Kinv = torch.linalg.inv(train.K)
    t_enc = time.time() - t0
    head = GlaceHead(local_channels=C, global_channels=0, head_channels=a.head_channels, num_head_blocks=1)
    head.set_mean(train.mean_camera_centre)
    opt = torch.optim.AdamW(head.parameters(), lr=a.lr)
    sch = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.iterations, cycle_momentum=False)
    g = torch.Generator().manual_seed(0)
    for it in range(a.iterations):
        sel = torch.randint(feats.shape[0], (a.batch,), generator=g)
        f = feats[sel].T.reshape(1, C, 1, a.batch)
        p = head(f, None).reshape(3, a.batch).T  # (B,3)
        ii = img_idx[sel]
        pc = (w2c[ii, :, :3] @ p[:, :, None] + w2c[ii, :, 3:])[:, :, 0]
        proj = (train.K[ii] @ pc[:, :, None])[:, :, 0]
        uv = proj[:, :2] / proj[:, 2:].clamp(min=0.1)
        err = (uv - pix[sel]).abs().sum(1)
        valid = (pc[:, 2] > 0.1) & (pc[:, 2] < 1000) & (err < 1000)
        wclamp = dyntanh_clamp(it, a.iterations, 50, 1)
        ray = (Kinv[ii] @ torch.cat((pix[sel], torch.ones(a.batch, 1)), 1)[:, :, None])[:, :, 0]
        loss = (wclamp * torch.tanh(err[valid] / wclamp)).sum() + (10 * ray - pc).abs().sum(1)[~valid].sum()
        loss = loss / a.batch
        opt.zero_grad(); loss.backward(); opt.step(); sch.step()
        if (it + 1) % 200 == 0:
            print(f"it {it+1} loss {loss.item():.3f} valid {valid.float().mean():.2f} med px {err.median():.1f}", flush=True)
    t_map = time.time() - t0
    F_te = encode(enc, test)
    thr = 10.0 * H / 480
    terr, rerr = [], []
    pts2d = px.permute(1, 2, 0).reshape(-1, 2).numpy().astype(np.float64)
    with torch.no_grad():
        for i in range(len(test)):
            sc = head(F_te[i:i+1], None)[0].reshape(3, -1).T.numpy().astype(np.float64)
            K = test.K[i].numpy().astype(np.float64)
            ok, rvec, tvec, inl = cv2.solvePnPRansac(sc, pts2d, K, None, iterationsCount=1000, reprojectionError=thr,
                                                     confidence=0.9999, flags=cv2.SOLVEPNP_P3P)
            if not ok or inl is None or len(inl) < 4:
                terr.append(1e9); rerr.append(180); continue
            rvec, tvec = cv2.solvePnPRefineLM(sc[inl[:, 0]], pts2d[inl[:, 0]], K, None, rvec, tvec)
            R, _ = cv2.Rodrigues(rvec)
            c2w_est = np.eye(4); c2w_est[:3, :3] = R.T; c2w_est[:3, 3] = (-R.T @ tvec)[:, 0]
            gt = test.cam_to_world[i].numpy().astype(np.float64)
            terr.append(float(np.linalg.norm(gt[:3, 3] - c2w_est[:3, 3])))
            dR = c2w_est[:3, :3] @ gt[:3, :3].T
            rerr.append(float(np.degrees(np.arccos(np.clip((np.trace(dR) - 1) / 2, -1, 1)))))
    terr, rerr = np.array(terr), np.array(rerr)
    n = len(terr)
    res = {"encoder": a.encoder, "encoder_id": getattr(enc, "encoder_id", "?"), "scene": a.scene, "n_test": n,
           "pct_5cm5deg": float(100 * np.mean((terr < 0.05) & (rerr < 5))),
           "pct_10cm10deg": float(100 * np.mean((terr < 0.10) & (rerr < 10))),
           "median_t_cm": float(np.sort(terr)[n // 2] * 100), "median_r_deg": float(np.sort(rerr)[n // 2]),
           "encode_s": round(t_enc, 1), "map_s": round(t_map, 1), "iterations": a.iterations, "height": a.height}
    print(json.dumps(res))
    Path(a.out).write_text(json.dumps(res) + "\n")

if __name__ == "__main__":
    main()
