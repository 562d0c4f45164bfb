#!/usr/bin/env bash
# Starts the simulated backends, then Caddy with the demo config, on
# 127.0.0.1 only. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
pace="ttft=300ms;tps=15;tokens=40"
bin/olla-sim \
	-sim "ollama@127.0.0.1:41001=llama3.2:latest,qwen2.5:0.5b;name=ollama-a;$pace" \
	-sim "ollama@127.0.0.1:41002=llama3.2:latest,phi-4-mini;name=ollama-b;$pace" \
	-sim "lmstudio@127.0.0.1:41003=qwen2.5-7b-instruct,text-embedding-nomic-embed-text-v1.5;name=laptop-lmstudio;$pace" \
	-sim "vllm@127.0.0.1:41004=Qwen/Qwen2.5-7B-Instruct;name=gpu-vllm;$pace" &
sim=$!
trap 'kill $sim 2>/dev/null || true; wait $sim 2>/dev/null || true' EXIT
# Ctrl-C reaches Caddy too, which stops cleanly; the script then ends as a
# clean stop, not a failure make would report as "Error 1"
trap 'exit 0' INT TERM
echo "simulated backends on 127.0.0.1:41001-41004; olla on http://127.0.0.1:40114 (Ctrl-C stops both)"
bin/caddy run --config examples/demo.Caddyfile --adapter caddyfile
