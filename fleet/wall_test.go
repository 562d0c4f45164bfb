package fleet

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// valueTypes are fleet's plain values: copies or immutable configuration
// (Settings is built by the root's Provision), read and written freely.
// Every other struct type in fleet is endpoint state and keeps its fields
// unexported, so that Go itself stops any other package from touching
// them: outside fleet, an endpoint is reached only through its methods, as
// Caddy's reverseproxy reaches its pooled Host.
var valueTypes = []string{"Settings", "LoadSurface", "Health", "Status", "SignalStatus", "LearnedTimes", "AutoStatus"}

// TestStateBehindMethods holds that wall: no state type of fleet has an
// exported field (adding one fails here, and is the only way the root
// could read a field), and fleet imports nothing of the root package (Go
// would refuse the cycle anyway; this names it).
func TestStateBehindMethods(t *testing.T) {
	if got := exportedStateFields(t, "."); len(got) > 0 {
		t.Errorf("fleet's endpoint state has exported fields, which code outside fleet could read; add methods instead (or, for a plain value, list it in valueTypes): %s",
			strings.Join(got, ", "))
	}
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if path, _ := strconv.Unquote(imp.Path.Value); path == "github.com/caddy-olla/olla" {
				t.Errorf("%s imports the root package", name)
			}
		}
	}
}

// TestWallCheckFindsLeaks: the check reports exported fields of a state
// type and of a nested one, and passes over value types and unexported
// fields (testdata/leaky).
func TestWallCheckFindsLeaks(t *testing.T) {
	got := exportedStateFields(t, "testdata/leaky")
	want := []string{"Endpoint.InFlight", "nested.Exposed"}
	if !slices.Equal(got, want) {
		t.Errorf("leaks found %v, want %v", got, want)
	}
}

// exportedStateFields lists Type.Field for every exported field of a
// struct type declared in dir's Go files (tests aside) that is not one of
// valueTypes.
func exportedStateFields(t *testing.T, dir string) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok || slices.Contains(valueTypes, ts.Name.Name) {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			for _, field := range st.Fields.List {
				for _, id := range field.Names {
					if id.IsExported() {
						out = append(out, ts.Name.Name+"."+id.Name)
					}
				}
				if len(field.Names) == 0 { // embedded: its name is the field's
					if id := embeddedName(field.Type); id != "" && ast.IsExported(id) {
						out = append(out, ts.Name.Name+"."+id)
					}
				}
			}
			return true
		})
	}
	slices.Sort(out)
	return out
}

func embeddedName(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.StarExpr:
		return embeddedName(x.X)
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return x.Sel.Name
	case *ast.IndexExpr:
		return embeddedName(x.X)
	}
	return ""
}
