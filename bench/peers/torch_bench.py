"""PyTorch (CPU) side of the frostnet benchmark harness.

Usage: python bench/peers/torch_bench.py WORKLOAD --warmup W --reps R --threads 2
Prints exactly one JSON line on stdout (see bench/README.md).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

# Memory format per workload when --layout auto. Chosen by measuring both on
# the bench machine (2 threads, AVX2): see bench/README.md.
DEFAULT_LAYOUT = {
    "cnn_train": "nhwc",
    "inception_infer": "nhwc",
    "inception_frozen": "nhwc",
    "inception_finetune": "nhwc",
    "transfer_fit": "nhwc",
}


def extra_args(p):
    p.add_argument(
        "--layout",
        choices=["auto", "nchw", "nhwc"],
        default="auto",
        help="conv memory format (nhwc = torch.channels_last); auto = per-workload default",
    )


args = C.parse_args("torch", extra_args)
C.pin_thread_env(args.threads)
# libgomp's default busy-wait makes every parallel region stall for a scheduler
# tick whenever another process holds one of the 2 cores (measured here: MLP
# step 10 ms -> 270 ms on a shared machine). PASSIVE makes idle OpenMP workers
# sleep, like TF's Eigen pool and rayon do. Override by setting OMP_WAIT_POLICY.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

torch.set_num_threads(args.threads)
torch.set_num_interop_threads(1)
torch.manual_seed(C.SEED)

layout = args.layout
if layout == "auto":
    layout = DEFAULT_LAYOUT.get(args.workload, "n/a")
mf = torch.channels_last if layout == "nhwc" else torch.contiguous_format


def train_step_fn(model, params, x, y, loss_fn):
    opt = torch.optim.Adam(params, lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def inception(with_top):
    from torchvision.models import inception_v3

    m = inception_v3(weights=None, aux_logits=False, init_weights=False)
    if not with_top:
        # torchvision's InceptionV3 ends with adaptive avg-pool -> dropout -> fc;
        # dropping fc leaves the 2048-d globally average-pooled features
        # (dropout is a no-op in eval mode / only used in finetune training).
        m.fc = nn.Identity()
    return m


def build(workload):
    """Return (step, extra_json_fields). Data is created once, here."""
    if workload == "sgemm":
        n = C.SGEMM_N
        a = torch.randn(n, n, dtype=torch.float32)
        b = torch.randn(n, n, dtype=torch.float32)
        c = torch.empty(n, n, dtype=torch.float32)

        def step():
            torch.mm(a, b, out=c)

        return step, {"n": n}

    if workload == "mlp_train":
        model = nn.Sequential(
            nn.Linear(256, 500), nn.ReLU(),
            nn.Linear(500, 500), nn.ReLU(),
            nn.Linear(500, 1),
        )
        x = torch.randn(256, 256)
        y = torch.randn(256, 1)
        model.train()
        return train_step_fn(model, model.parameters(), x, y, nn.MSELoss()), {"batch": 256}

    if workload == "cnn_train":
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 10),
        )
        x = torch.randn(64, 1, 28, 28).contiguous(memory_format=mf)
        y = torch.randint(0, 10, (64,))
        model = model.to(memory_format=mf)
        model.train()
        return train_step_fn(model, model.parameters(), x, y, nn.CrossEntropyLoss()), {
            "batch": 64, "layout": layout}

    if workload == "inception_infer":
        model = inception(with_top=True).eval().to(memory_format=mf)
        x = torch.randn(1, 3, 299, 299).contiguous(memory_format=mf)

        def step():
            with torch.inference_mode():
                model(x)

        return step, {"batch": 1, "layout": layout, "mode": "eval+inference_mode"}

    if workload in ("inception_frozen", "inception_finetune"):
        frozen = workload == "inception_frozen"
        base = inception(with_top=False).to(memory_format=mf)
        head = nn.Linear(2048, 200)
        if frozen:
            base.eval()  # BN uses running stats
            for p in base.parameters():
                p.requires_grad_(False)
            params = list(head.parameters())
        else:
            base.train()  # BN uses batch stats
            params = list(base.parameters()) + list(head.parameters())
        head.train()
        model = nn.Sequential(base, head)
        x = torch.randn(8, 3, 299, 299).contiguous(memory_format=mf)
        y = torch.randint(0, 200, (8,))
        step = train_step_fn(model, params, x, y, nn.CrossEntropyLoss())
        # model.train()/eval() would override base's mode; we never call it on `model`.
        return step, {"batch": 8, "layout": layout,
                      "trainable_params": sum(p.numel() for p in params)}

    if workload == "image_pipeline":
        # torchvision's standard folder pipeline: ImageFolder (PIL decode) + Resize to 299x299
        # (PIL bilinear, antialiased) + ToTensor, batched by a DataLoader with one worker process
        # per thread; one rep = one epoch.
        from torchvision import datasets, transforms

        tf = transforms.Compose([transforms.Resize((C.PIPELINE_SIDE, C.PIPELINE_SIDE)),
                                 transforms.ToTensor()])
        ds = datasets.ImageFolder(C.IMAGES_DIR, transform=tf)
        loader = torch.utils.data.DataLoader(ds, batch_size=C.PIPELINE_BATCH, shuffle=False,
                                             num_workers=args.threads)

        def step():
            seen = 0
            for x, _ in loader:
                seen += x.shape[0]
            assert seen == len(ds), (seen, len(ds))

        return step, {"n": len(ds), "batch": C.PIPELINE_BATCH, "workers": args.threads,
                      "mode": "ImageFolder+DataLoader, 1 epoch"}
    if workload == "transfer_fit":
        # The standard transfer-learning loop: base in eval mode with requires_grad off, a new
        # Linear head, 5 epochs over the same 64 samples, reshuffled each epoch, batch 16.
        base = inception(with_top=False).to(memory_format=mf).eval()
        for p in base.parameters():
            p.requires_grad_(False)
        head = nn.Linear(2048, C.TRANSFER_CLASSES).train()
        model = nn.Sequential(base, head)
        n, bs = C.TRANSFER_SAMPLES, C.TRANSFER_BATCH
        x = torch.randn(n, 3, 299, 299).contiguous(memory_format=mf)
        y = torch.randint(0, C.TRANSFER_CLASSES, (n,))
        opt = torch.optim.Adam(head.parameters(), lr=1e-3)
        loss_fn = nn.CrossEntropyLoss()

        def step():
            for _ in range(C.TRANSFER_EPOCHS):
                perm = torch.randperm(n)
                for i in range(0, n, bs):
                    idx = perm[i:i + bs]
                    opt.zero_grad(set_to_none=True)
                    loss = loss_fn(model(x[idx]), y[idx])
                    loss.backward()
                    opt.step()
            return loss

        return step, {"batch": bs, "samples": n, "epochs": C.TRANSFER_EPOCHS, "layout": layout,
                      "mode": "train loop (base eval, requires_grad off)",
                      "trainable_params": sum(p.numel() for p in head.parameters())}

    raise SystemExit(f"unknown workload {workload}")


step, extra = build(args.workload)
times = C.time_reps(step, args.warmup, args.reps)
if args.workload == "image_pipeline":
    # The decoding happens in the DataLoader's worker processes: report the largest one too.
    extra["worker_max_rss_kb"] = C.children_max_rss_kb()
C.emit("torch", args.workload, times, torch.__version__, args.threads,
       omp_wait_policy=os.environ["OMP_WAIT_POLICY"], **extra)
