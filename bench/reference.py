#!/usr/bin/python3
"""Plain PyTorch reference of the two SegNet architectures, for benchmarking against build/segnet.

Run with Debian's interpreter (Debian's python3-torch is importable only there):
    /usr/bin/python3 bench/reference.py --model segnet --size 360x480 --batch 1 --mode infer
"""
import argparse
import json
import os
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# (kernel, encoder stages, decoder stages (deepest first), ReLU in decoder, classifier kernel)
ARCHS = {
    "segnet": (3, [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
               [[512, 512, 512], [512, 512, 256], [256, 256, 128], [128, 64], [64]], True, 3),
    "segnet-basic": (7, [[64]] * 4, [[64]] * 4, False, 1),
}


def conv_blocks(cin, channels, k, relu):
    layers = []
    for cout in channels:
        layers += [nn.Conv2d(cin, cout, k, padding=k // 2), nn.BatchNorm2d(cout)] + ([nn.ReLU(inplace=True)] if relu else [])
        cin = cout
    return nn.Sequential(*layers), cin


def unpool(x, indices, size):
    if x.dtype != torch.bfloat16:
        return F.max_unpool2d(x, indices, 2, 2, output_size=size)
    # torch 1.13 has no BFloat16 max_unpool2d kernel: scatter into the flattened planes instead.
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    out = torch.empty((*x.shape[:2], *size), dtype=x.dtype, memory_format=fmt).zero_()
    out.flatten(2).scatter_(2, indices.flatten(2), x.flatten(2))
    return out


class SegNet(nn.Module):
    def __init__(self, model, classes=11, in_channels=3):
        super().__init__()
        k, enc, dec, dec_relu, ck = ARCHS[model]
        self.encoder, self.decoder, c = nn.ModuleList(), nn.ModuleList(), in_channels
        for channels in enc:
            block, c = conv_blocks(c, channels, k, True)
            self.encoder.append(block)
        for channels in dec:
            block, c = conv_blocks(c, channels, k, dec_relu)
            self.decoder.append(block)
        self.classifier = nn.Conv2d(c, classes, ck, padding=ck // 2)

    def forward(self, x):
        stack = []
        for block in self.encoder:
            x = block(x)
            size = x.shape[-2:]
            x, idx = F.max_pool2d(x, 2, 2, ceil_mode=True, return_indices=True)
            stack.append((idx, size))
        for block in self.decoder:
            idx, size = stack.pop()
            x = block(unpool(x, idx, size))
        return self.classifier(x)


def forward_macs(model, classes, h, w, in_channels=3):
    """Multiply-adds of every convolution for one image (out_H*out_W*out_C*in_C*k*k); nothing else counted."""
    k, enc, dec, _, ck = ARCHS[model]
    macs, c, sizes = 0, in_channels, []
    for channels in enc:
        for cout in channels:
            macs += h * w * cout * c * k * k
            c = cout
        sizes.append((h, w))
        h, w = -(-h // 2), -(-w // 2)  # ceil_mode pooling
    for channels in dec:
        h, w = sizes.pop()
        for cout in channels:
            macs += h * w * cout * c * k * k
            c = cout
    return macs + h * w * classes * c * ck * ck


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=ARCHS, default="segnet")
    p.add_argument("--size", default="360x480", help="HxW")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--mode", choices=["train", "infer"], default="infer")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--iters", type=int, help="timed iterations (default 5 infer / 3 train)")
    p.add_argument("--warmup", type=int, help="warm-up iterations (default 2 infer / 1 train)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--classes", type=int, default=11)
    p.add_argument("--json", help="write the result to this file")
    p.add_argument("--macs-only", action="store_true", help="print MACs and parameters for model/size, then exit")
    a = p.parse_args()
    h, w = (int(v) for v in a.size.lower().split("x"))
    train = a.mode == "train"
    iters = a.iters if a.iters is not None else (3 if train else 5)
    warmup = a.warmup if a.warmup is not None else (1 if train else 2)

    macs = forward_macs(a.model, a.classes, h, w)
    torch.manual_seed(0)
    model = SegNet(a.model, a.classes)
    params = sum(p.numel() for p in model.parameters())
    if a.macs_only:
        print(f"{a.model} {h}x{w} classes={a.classes}: {macs:,} MACs/image ({macs / 1e9:.2f} G), {params:,} parameters")
        return

    torch.set_num_threads(a.threads)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(a.batch, 3, h, w).contiguous(memory_format=fmt)
    labels = torch.randint(0, a.classes, (a.batch, h, w))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16")

    if train:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast:
                logits = model(x)
            F.cross_entropy(logits.float(), labels, ignore_index=255).backward()
            opt.step()
    else:
        model.eval()

        def step():
            with torch.inference_mode(), autocast:
                model(x)

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    elapsed = time.perf_counter() - start

    images = a.batch * iters
    result = {
        "implementation": "pytorch", "model": a.model, "size": f"{h}x{w}", "batch": a.batch, "mode": a.mode,
        "precision": a.precision, "channels_last": a.channels_last, "threads": a.threads, "iters": iters,
        "warmup": warmup, "classes": a.classes, "params": params, "macs_per_image": macs,
        "images_per_s": images / elapsed,
        "ms_per_image": 1000 * elapsed / images,
        "gflops": images * 2 * macs * (3 if train else 1) / elapsed / 1e9,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_version": torch.__version__,
    }
    print(f"pytorch {a.model} {a.mode} {h}x{w} b{a.batch} {a.precision}{' CL' if a.channels_last else ''} "
          f"threads={a.threads}: {result['images_per_s']:.3f} img/s, {result['ms_per_image']:.1f} ms/img, "
          f"{result['gflops']:.1f} GFLOP/s, peak {result['peak_rss_mb']:.0f} MB ({macs / 1e9:.2f} GMAC/img fwd)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
