package olla

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddy-olla/olla/discovery"
)

// The catalogue routes answer from views built once per catalogue version
// (every endpoint's model list and availability) and kept encoded, so a
// client asking again and again costs the bytes it is sent, not a merge of
// every endpoint's models. Each view is built once however many ask at the
// same time; what is kept is bounded by discovery.DefaultViewBudget per
// handler.

// catalogueCache is a handler's catalogue views; the zero value is ready.
type catalogueCache struct {
	views discovery.ViewCache

	aliasOnce sync.Once
	aliasTag  string              // part of every ETag: aliases show in the answers
	byTarget  map[string][]string // lower-case target model -> aliases, sorted
}

// catalogueInput is what one request's views are built from: every
// endpoint's model list and availability, read once, and the version
// they make.
type catalogueInput struct {
	version string
	eps     []discovery.EndpointModels // config order
	now     time.Time
}

// catalogueInput reads the endpoints' model lists and availability. The
// version changes when a model list changes (a rediscovered list equal to
// the last keeps its version) or an endpoint becomes routable or stops
// being routable.
func (h *Handler) catalogueInput(now time.Time) catalogueInput {
	eps := make([]discovery.EndpointModels, 0, len(h.states))
	key := make([]byte, 0, 11*len(h.states))
	for _, st := range h.states {
		em := discovery.EndpointModels{Endpoint: st.Name(), Type: st.Type(),
			Status: st.HealthStatus(), Routable: st.Routable(now)}
		var gen uint64
		em.Models, gen = st.Models()
		key = binary.AppendUvarint(key, gen)
		if em.Routable {
			key = append(key, 1)
		} else {
			key = append(key, 0)
		}
		eps = append(eps, em)
	}
	return catalogueInput{version: string(key), eps: eps, now: now}
}

// sourcesFor keeps the endpoints the route allows.
func (in catalogueInput) sourcesFor(rt route) []discovery.EndpointModels {
	if rt.types == nil {
		return in.eps
	}
	out := make([]discovery.EndpointModels, 0, len(in.eps))
	for _, em := range in.eps {
		if rt.allows(em.Type) {
			out = append(out, em)
		}
	}
	return out
}

// etag is the weak validator of one answer from this version: the view and
// the handler's aliases (the only configuration the answers show).
func (h *Handler) etag(in catalogueInput, view string) string {
	h.catalogueAliases()
	sum := fnv.New64a()
	sum.Write([]byte(in.version))
	sum.Write([]byte{0})
	sum.Write([]byte(view))
	sum.Write([]byte{0})
	sum.Write([]byte(h.catalogue.aliasTag))
	return `W/"` + strconv.FormatUint(sum.Sum64(), 36) + `"`
}

// catalogueAliases indexes the configured aliases by the model they name.
func (h *Handler) catalogueAliases() map[string][]string {
	c := &h.catalogue
	c.aliasOnce.Do(func() {
		c.byTarget = map[string][]string{}
		names := make([]string, 0, len(h.Aliases))
		for alias := range h.Aliases {
			names = append(names, alias)
		}
		sort.Strings(names)
		sum := fnv.New64a()
		for _, alias := range names {
			seen := map[string]bool{}
			sum.Write([]byte(alias + "\x00"))
			for _, t := range h.Aliases[alias] {
				sum.Write([]byte(t + "\x01"))
				lt := strings.ToLower(t)
				if !seen[lt] {
					seen[lt] = true
					c.byTarget[lt] = append(c.byTarget[lt], alias)
				}
			}
		}
		c.aliasTag = strconv.FormatUint(sum.Sum64(), 36)
	})
	return c.byTarget
}

// aliasesOf lists the configured aliases that point at a model.
func (h *Handler) aliasesOf(id string) []string {
	return h.catalogueAliases()[strings.ToLower(id)]
}

// view returns the value in slot for this version, building it once.
func (h *Handler) view(ctx context.Context, in catalogueInput, slot, stamp string, build func() (any, int64)) (any, error) {
	return h.catalogue.views.Get(ctx, in.version, slot, stamp, func() (any, int64) {
		if h.app != nil && h.app.metrics != nil {
			kind, _, _ := strings.Cut(slot, "/")
			h.app.metrics.catalogueBuilds.WithLabelValues(kind).Inc()
		}
		return build()
	})
}

// catalogueEntries is the merged catalogue over every endpoint, with
// unroutable sources, for /olla/models and the status routes.
type catalogueEntries struct {
	entries     []discovery.Entry
	types       []string       // ModelType of each entry
	byID        map[string]int // exact id -> index
	byLower     map[string]int // lower-case id -> first index
	allRoutable bool
}

func (h *Handler) allEntries(ctx context.Context, in catalogueInput) (*catalogueEntries, error) {
	v, err := h.view(ctx, in, "entries", "", func() (any, int64) {
		entries := discovery.Unify(in.eps)
		c := &catalogueEntries{entries: entries, types: make([]string, len(entries)),
			byID: make(map[string]int, len(entries)), byLower: make(map[string]int, len(entries)), allRoutable: true}
		size := int64(0)
		for i := range entries {
			e := &entries[i]
			c.types[i] = discovery.ModelType(e.Model)
			c.byID[e.ID] = i
			if _, ok := c.byLower[strings.ToLower(e.ID)]; !ok {
				c.byLower[strings.ToLower(e.ID)] = i
			}
			if !e.Routable() {
				c.allRoutable = false
			}
			size += 512 + 3*int64(len(e.ID)) + 96*int64(len(e.Sources))
		}
		return c, size
	})
	if err != nil {
		return nil, err
	}
	return v.(*catalogueEntries), nil
}

// lookup finds an entry by id, then case-insensitively.
func (c *catalogueEntries) lookup(id string) (int, bool) {
	if i, ok := c.byID[id]; ok {
		return i, true
	}
	i, ok := c.byLower[strings.ToLower(id)]
	return i, ok
}

// encodedList is a JSON list answer kept as one encoded fragment per entry,
// so a filtered answer is the kept fragments copied out, not re-encoded.
type encodedList struct {
	head, tail []byte
	buf        []byte // the fragments, comma-separated: the whole list's entries
	ends       []int  // ends[i] is where entry i's fragment ends in buf
	gz         []byte // the default answer gzipped, when it is worth it
}

func (l *encodedList) fragment(i int) []byte {
	start := 0
	if i > 0 {
		start = l.ends[i-1] + 1 // past the comma
	}
	return l.buf[start:l.ends[i]]
}

// size is the answer's length with the entries keep keeps (all when nil).
func (l *encodedList) size(keep func(int) bool) int {
	n, kept := len(l.head)+len(l.tail), 0
	if keep == nil {
		return n + len(l.buf)
	}
	for i := range l.ends {
		if keep(i) {
			n += len(l.fragment(i))
			kept++
		}
	}
	if kept > 1 {
		n += kept - 1 // commas
	}
	return n
}

func (l *encodedList) writeTo(w io.Writer, keep func(int) bool) error {
	if keep == nil {
		for _, b := range [][]byte{l.head, l.buf, l.tail} {
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		return nil
	}
	bw := bufio.NewWriterSize(w, 32<<10)
	bw.Write(l.head)
	first := true
	for i := range l.ends {
		if keep != nil && !keep(i) {
			continue
		}
		if !first {
			bw.WriteByte(',')
		}
		first = false
		bw.Write(l.fragment(i))
	}
	bw.Write(l.tail)
	return bw.Flush()
}

func (l *encodedList) bytes() int64 {
	return int64(len(l.buf) + 8*len(l.ends) + len(l.gz) + len(l.head) + len(l.tail))
}

// gzipList compresses an answer, fast rather than small: it is done on a
// rebuild or per request.
func gzipList(l *encodedList, keep func(int) bool) []byte {
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestSpeed)
	_ = l.writeTo(zw, keep)
	_ = zw.Close()
	return z.Bytes()
}

// encodeList encodes entries in a list format.
func (h *Handler) encodeList(f *listFormat, entries []discovery.Entry, types []string, now time.Time) *encodedList {
	l := &encodedList{head: []byte(f.head), tail: []byte(f.tail), ends: make([]int, 0, len(entries))}
	ec := &encodeContext{h: h, created: now.Unix(), now: now}
	for i := range entries {
		typ := ""
		if types != nil {
			typ = types[i]
		} else {
			typ = discovery.ModelType(entries[i].Model)
		}
		frag, err := json.Marshal(f.entry(&entries[i], typ, ec))
		if err != nil {
			frag = []byte("null") // every field is a plain value; cannot happen
		}
		if i > 0 {
			l.buf = append(l.buf, ',')
		}
		l.buf = append(l.buf, frag...)
		l.ends = append(l.ends, len(l.buf))
	}
	return l
}

// listing is a provider listing route's answer in one format: the models
// of the route's routable endpoints.
func (h *Handler) listing(ctx context.Context, in catalogueInput, rt route, format string) (*encodedList, error) {
	f := listFormats[format]
	v, err := h.view(ctx, in, "listing/"+typesKey(rt)+"/"+format, "", func() (any, int64) {
		all := discovery.Unify(in.sourcesFor(rt))
		kept := all[:0]
		for _, e := range all {
			if e.Routable() {
				kept = append(kept, e)
			}
		}
		l := h.encodeList(f, kept, nil, in.now)
		if l.size(nil) >= minGzipSize {
			l.gz = gzipList(l, nil)
		}
		return l, l.bytes()
	})
	if err != nil {
		return nil, err
	}
	return v.(*encodedList), nil
}

// modelsList is /olla/models in one format over every entry; its gzip form
// is the default answer's (routable entries only).
func (h *Handler) modelsList(ctx context.Context, in catalogueInput, c *catalogueEntries, format string) (*encodedList, error) {
	f := listFormats[format]
	v, err := h.view(ctx, in, "models/"+format, "", func() (any, int64) {
		l := h.encodeList(f, c.entries, c.types, in.now)
		if keep := c.defaultKeep(); l.size(keep) >= minGzipSize {
			l.gz = gzipList(l, keep)
		}
		return l, l.bytes()
	})
	if err != nil {
		return nil, err
	}
	return v.(*encodedList), nil
}

// defaultKeep keeps the entries /olla/models shows by default: those with
// a routable source (nil: all of them).
func (c *catalogueEntries) defaultKeep() func(int) bool {
	if c.allRoutable {
		return nil
	}
	return func(i int) bool { return c.entries[i].Routable() }
}

func typesKey(rt route) string {
	if rt.types == nil {
		return "*"
	}
	ts := make([]string, 0, len(rt.types))
	for t := range rt.types {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return strings.Join(ts, ",")
}

// minGzipSize is the smallest answer worth compressing; maxLiveGzip the
// largest compressed per request (a filtered answer) rather than sent as is.
const (
	minGzipSize = 256
	maxLiveGzip = 1 << 20
)

// writeList answers with a list, the entries keep keeps (all when nil);
// gz, when given, is that answer compressed.
func (rq *request) writeList(etag string, l *encodedList, keep func(int) bool, gz []byte) error {
	if rq.notModified(etag) {
		return nil
	}
	size := l.size(keep)
	return rq.writeTagged(size, func(w io.Writer) error { return l.writeTo(w, keep) }, func() []byte {
		if gz != nil {
			return gz
		}
		if size > maxLiveGzip {
			return nil
		}
		return gzipList(l, keep)
	})
}
