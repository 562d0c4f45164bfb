// Package prefix knows which backend already holds a request's prompt.
//
// A backend with a prefix cache (vLLM, SGLang, llama.cpp's slots, Ollama's
// loaded context) answers a prompt it has mostly seen at a fraction of the
// cost of a new one. Clients such as coding agents and chat UIs send no
// session id, but every turn of a conversation resends the whole history, so
// the prompt itself says which conversation it continues.
//
// [Chain.Parse] reads a request body (OpenAI chat and completions, Ollama
// chat and generate, Anthropic Messages, OpenAI Responses) into the prompt as
// the backend will tokenise it: system text, tools, then the messages in
// order with their roles, content parts as text, other values as canonical
// JSON (whitespace and key order do not matter, string escapes are decoded,
// Anthropic's cache_control markers are dropped). That canonical stream is cut
// into fixed blocks of [BlockBytes] and hashed as one running xxhash, so the
// hash of block k covers blocks 0..k and equal hashes mean an equal prefix.
// Each byte of the prompt is hashed once; at most [MaxBlocks] blocks are
// hashed, so a 10 MB prompt costs what a 1 MiB one does. The hash is seeded by
// the model and has no per-process seed, so two proxies agree.
//
// The chain also marks where the conversation starts: [Chain.Shared] blocks
// hold only what many conversations share (system prompt, tools), and
// [Chain.Anchor] hashes everything through the first message that is the
// conversation's own, so a conversation's first request can be placed by a
// deterministic home (rendezvous over the anchor) that any proxy computes
// alike, and its later turns follow the [Index].
//
// [Index] is an approximate record of what each endpoint has cached: the
// chains of the requests it served, per model, bounded by a block budget per
// endpoint with the least recently used blocks evicted first (a chain's tail
// before its head, as vLLM frees them), and forgotten when the backend
// restarts or unloads the model. [Index.Match] gives every candidate's
// longest cached prefix in a few map probes (a binary search over the chain,
// since a cached block implies its prefix), without allocating.
package prefix
