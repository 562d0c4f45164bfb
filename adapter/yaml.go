package adapter

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"go.yaml.in/yaml/v3"
)

// The YAML is read as a node tree rather than decoded into structs, so that
// every warning and error can name the key and its line, and so that keys
// nobody reads can be reported instead of silently dropped.

// conv carries one adaptation: where warnings go and how the environment
// and files are consulted.
type conv struct {
	file     string
	env      func(string) (string, bool)
	readable func(string) error
	warnings []caddyconfig.Warning
	hostLine int // server.host, for warnings about who can reach the server
}

// configError is an error that names the file, line and key.
type configError struct {
	file string
	line int
	key  string
	msg  string
}

func (e *configError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", e.file, e.line, e.key, e.msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.file, e.key, e.msg)
}

func (c *conv) errorf(line int, key, format string, args ...any) error {
	return &configError{file: c.file, line: line, key: key, msg: fmt.Sprintf(format, args...)}
}

func (c *conv) warn(line int, key, format string, args ...any) {
	c.warnings = append(c.warnings, caddyconfig.Warning{File: c.file, Line: line, Directive: key, Message: fmt.Sprintf(format, args...)})
}

// field is one value in the YAML with the dotted path that names it.
type field struct {
	c    *conv
	path string
	line int // the line of the key (or of the value, for list items)
	node *yaml.Node
}

// resolve follows YAML aliases (*anchor) to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

func (f *field) errorf(format string, args ...any) error {
	return f.c.errorf(f.line, f.path, format, args...)
}

func (f *field) warn(format string, args ...any) { f.c.warn(f.line, f.path, format, args...) }

// scalar returns the value's text; a mapping or list is an error.
func (f *field) scalar(what string) (string, error) {
	n := resolve(f.node)
	if n.Kind != yaml.ScalarNode {
		return "", f.errorf("expected %s, found a %s", what, kindName(n))
	}
	return n.Value, nil
}

func (f *field) str() (string, error) { return f.scalar("a string") }

func (f *field) integer() (int, error) {
	s, err := f.scalar("a whole number")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(strings.TrimSpace(s), "_", ""), 10, 64)
	if err != nil || n > 1<<31 || n < -(1<<31) {
		return 0, f.errorf("%q is not a whole number", s)
	}
	return int(n), nil
}

func (f *field) boolean() (bool, error) {
	s, err := f.scalar("true or false")
	if err != nil {
		return false, err
	}
	var b bool
	if err := resolve(f.node).Decode(&b); err != nil {
		return false, f.errorf("%q is not true or false", s)
	}
	return b, nil
}

func (f *field) duration() (time.Duration, error) {
	s, err := f.scalar("a duration")
	if err != nil {
		return 0, err
	}
	d, err := parseDuration(s)
	if err != nil {
		return 0, f.errorf("%v", err)
	}
	if d < 0 {
		return 0, f.errorf("%s is negative", s)
	}
	return d, nil
}

func (f *field) size() (int64, error) {
	s, err := f.scalar("a size")
	if err != nil {
		return 0, err
	}
	v, err := parseSize(s)
	if err != nil {
		return 0, f.errorf("%v", err)
	}
	return v, nil
}

// list returns the items of a sequence, each as a field named path[i].
func (f *field) list() ([]*field, error) {
	n := resolve(f.node)
	if n.Kind != yaml.SequenceNode {
		return nil, f.errorf("expected a list, found a %s", kindName(n))
	}
	out := make([]*field, 0, len(n.Content))
	for i, item := range n.Content {
		out = append(out, &field{c: f.c, path: fmt.Sprintf("%s[%d]", f.path, i), line: item.Line, node: item})
	}
	return out, nil
}

// strings returns a list of strings.
func (f *field) strings() ([]string, error) {
	items, err := f.list()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, err := it.str()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return fmt.Sprintf("value %q", n.Value)
	}
	return "nothing"
}

// mapping is a YAML mapping whose keys are consumed one by one; whatever is
// left at the end is reported as unknown.
type mapping struct {
	f       *field
	keys    []string
	entries map[string]*field
	used    map[string]bool
}

// mapping reads the field as a mapping. A null value is an empty mapping.
func (f *field) mapping() (*mapping, error) {
	m := &mapping{f: f, entries: map[string]*field{}, used: map[string]bool{}}
	n := resolve(f.node)
	if isNull(n) {
		return m, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, f.errorf("expected a mapping of keys, found a %s", kindName(n))
	}
	if err := m.add(n, false); err != nil {
		return nil, err
	}
	return m, nil
}

// add records a mapping node's entries. Merge keys (<<: *anchor) bring in
// the anchored mapping's entries unless the mapping sets them itself.
func (m *mapping) add(n *yaml.Node, merged bool) error {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		key := k.Value
		child := &field{c: m.f.c, path: join(m.f.path, key), line: k.Line, node: v}
		if prev, dup := m.entries[key]; dup {
			if merged {
				continue
			}
			return m.f.c.errorf(k.Line, child.path, "set twice (first at line %d)", prev.line)
		}
		m.keys = append(m.keys, key)
		m.entries[key] = child
	}
	for _, mv := range merges {
		mv = resolve(mv)
		srcs := []*yaml.Node{mv}
		if mv.Kind == yaml.SequenceNode {
			srcs = mv.Content
		}
		for _, s := range srcs {
			s = resolve(s)
			if s.Kind != yaml.MappingNode {
				return m.f.c.errorf(s.Line, m.f.path, "a merge key (<<) must name a mapping")
			}
			if err := m.add(s, true); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// get takes a key; nil when it is absent or null.
func (m *mapping) get(key string) *field {
	m.used[key] = true
	f := m.entries[key]
	if f == nil || isNull(f.node) {
		return nil
	}
	return f
}

// child takes a key that holds a mapping (empty when absent).
func (m *mapping) child(key string) (*mapping, error) {
	f := m.get(key)
	if f == nil {
		return (&field{c: m.f.c, path: join(m.f.path, key)}).mapping()
	}
	return f.mapping()
}

// ignore takes a key we do not honour and warns about it when present.
func (m *mapping) ignore(key, format string, args ...any) {
	m.used[key] = true
	if f := m.entries[key]; f != nil {
		f.warn(format, args...)
	}
}

// done warns about every key nobody took.
func (m *mapping) done() {
	for _, k := range m.keys {
		if !m.used[k] {
			f := m.entries[k]
			f.warn("unknown key, ignored (the standalone proxy ignores unknown keys silently: check the spelling)")
		}
	}
}

// line is the line of the key, or of the mapping when the key is absent.
func (m *mapping) line(key string) int {
	if f := m.entries[key]; f != nil {
		return f.line
	}
	return m.f.line
}
