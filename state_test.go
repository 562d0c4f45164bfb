package olla

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/caddy-olla/olla/profiles"
)

// BenchmarkModelMemory reports the heap one discovered model holds in an
// endpoint's snapshot (a typical Ollama entry, parsed from its /api/tags
// JSON, with both lookup indexes).
func BenchmarkModelMemory(b *testing.B) {
	const n = 1000
	body := []byte(`{"models":[`)
	for i := range n {
		if i > 0 {
			body = append(body, ',')
		}
		body = fmt.Appendf(body, `{"name":"model-%04d:7b-instruct-q4_K_M","model":"model-%04d:7b-instruct-q4_K_M","modified_at":"2026-11-24T20:00:00Z","size":4683087332,"digest":"sha256:%064d","details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"7.6B","quantization_level":"Q4_K_M"}}`, i, i, i)
	}
	body = append(body, "]}"...)
	keep := make([]*modelSnapshot, 0, b.N)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range b.N {
		models, err := profiles.ParseModels(profiles.FormatOllama, body)
		if err != nil || len(models) != n {
			b.Fatal(err)
		}
		keep = append(keep, newModelSnapshot(models, time.Now()))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N*n), "B/model")
	runtime.KeepAlive(keep)
}
