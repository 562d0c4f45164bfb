package adapter

import (
	"go.yaml.in/yaml/v3"
)

// maxExpandedNodes bounds the document's size with every alias expanded.
// An alias (*name) or merge key (<<: *name) stands for a whole subtree, so
// a few lines of nested aliases can stand for billions of values; a real
// config has a few hundred.
const maxExpandedNodes = 100_000

// checkAliases refuses, before anything is expanded, a document whose
// aliases refer to a node that contains them (the adapter would follow
// them forever) or that expands past maxExpandedNodes. The YAML library
// keeps aliases as pointers in the node tree and does not expand them, so
// the tree itself is small; this walk counts each node's expanded size
// once (memoised), with its own stack, so neither depth nor aliasing can
// make it slow or overflow.
func (c *conv) checkAliases(root *yaml.Node) error {
	type frame struct {
		n    *yaml.Node
		next int // index of the next child to visit
		size int // expanded size of the children visited so far
	}
	size := map[*yaml.Node]int{}  // expanded size of every finished node
	open := map[*yaml.Node]bool{} // nodes on the current path
	stack := []*frame{{n: root}}
	open[root] = true
	for len(stack) > 0 {
		top := stack[len(stack)-1]
		kids := top.n.Content
		if top.n.Kind == yaml.AliasNode {
			kids = []*yaml.Node{top.n.Alias}
		}
		if top.next < len(kids) {
			k := kids[top.next]
			top.next++
			if k == nil {
				continue
			}
			if open[k] {
				// Only an alias can point back up the tree.
				return c.errorf(top.n.Line, "*"+top.n.Value, "refers to &%s (line %d), which contains it: a cyclic alias or merge key (<<) cannot be expanded", k.Anchor, k.Line)
			}
			if s, done := size[k]; done {
				top.size += s
				if top.size > maxExpandedNodes {
					return c.tooManyNodes(top.n)
				}
				continue
			}
			open[k] = true
			stack = append(stack, &frame{n: k})
			continue
		}
		total := top.size + 1
		if total > maxExpandedNodes {
			return c.tooManyNodes(top.n)
		}
		size[top.n] = total
		delete(open, top.n)
		stack = stack[:len(stack)-1]
		if len(stack) > 0 {
			stack[len(stack)-1].size += total
		}
	}
	return nil
}

func (c *conv) tooManyNodes(n *yaml.Node) error {
	key := "aliases"
	if n.Kind == yaml.AliasNode {
		key = "*" + n.Value
	}
	return c.errorf(n.Line, key, "aliases and merge keys (<<) expand the document past %d values, the olla adapter's limit; a config needs far fewer, so check for aliases nested in aliases", maxExpandedNodes)
}
