package filter

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The filter's two programs page in what they link and what their
// package inits touch, once per filter: these tests keep both small.

const (
	module            = "github.com/clawrun/clawrun"
	supervisorProgram = module + "/cmd/clawrun-egress"
	workerProgram     = module + "/cmd/clawrun-egress-worker"
)

// goList lists the packages pkg depends on (itself included), as go list
// -deps -f format prints them, one a line.
func goList(t *testing.T, format, pkg string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-tags", "netgo osusergo", "-f", format, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// TestSupervisorProgramIsLean: the supervisor's program links none of the
// worker's code (proxy, resolver, inspection, rules, policy language) nor
// what that brings (net/http, crypto/tls, regexp, yaml, DNS).
func TestSupervisorProgramIsLean(t *testing.T) {
	forbidden := []string{
		"net/http", "crypto/tls", "crypto/x509", "regexp", "go.yaml.in/yaml/v3", "github.com/miekg/dns",
		module + "/egress/filter", module + "/egress/proxy", module + "/egress/resolver", module + "/egress/inspect",
		module + "/egress/rules", module + "/egress/credentials", module + "/egress/inference",
		module + "/egress/decisionlog", module + "/runtime/policy",
	}
	deps := goList(t, "{{.ImportPath}}", supervisorProgram)
	for _, f := range forbidden {
		for _, d := range deps {
			if d == f {
				t.Errorf("clawrun-egress (the supervisor) links %s", f)
			}
		}
	}
}

// TestNoRegexpAtPackageInit: no package of the filter's programs compiles
// a regexp in a package-level variable (compiled at every start, by every
// filter, used or not): compile it on first use.
func TestNoRegexpAtPackageInit(t *testing.T) {
	seen := map[string]bool{}
	for _, program := range []string{supervisorProgram, workerProgram} {
		for _, line := range goList(t, `{{.ImportPath}}|{{.Dir}}|{{join .GoFiles " "}}`, program) {
			parts := strings.SplitN(line, "|", 3)
			if len(parts) != 3 || !strings.HasPrefix(parts[0], module+"/") || seen[parts[0]] {
				continue
			}
			seen[parts[0]] = true
			for _, name := range strings.Fields(parts[2]) {
				for _, at := range packageLevelRegexps(t, filepath.Join(parts[1], name)) {
					t.Errorf("%s: a regexp compiled at package init", at)
				}
			}
		}
	}
	if len(seen) == 0 {
		t.Fatal("no package of the module found")
	}
}

// packageLevelRegexps returns where the Go file path compiles a regexp
// in the initializer of a package-level variable.
func packageLevelRegexps(t *testing.T, path string) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, decl := range f.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.VAR {
			continue
		}
		ast.Inspect(gen, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncLit:
				return false // runs when called, not at init
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok {
					if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "regexp" && strings.Contains(sel.Sel.Name, "Compile") {
						found = append(found, fset.Position(n.Pos()).String())
					}
				}
			}
			return true
		})
	}
	return found
}

// initLine is one package's init as GODEBUG=inittrace=1 prints it.
var initLine = regexp.MustCompile(`^init (\S+) @[0-9.]+ m?s, [0-9.]+ m?s clock, ([0-9]+) bytes, ([0-9]+) allocs`)

// TestFilterProgramsInit: the package inits of the filter's programs, run
// as make build builds them, allocate little: in all, under a bound with
// some room over what they take now, and clawrun's own packages next to
// nothing each (a table or a pattern built at init shows up here).
func TestFilterProgramsInit(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		program string
		total   int // bytes, all packages' inits
	}{
		{supervisorProgram, 48 << 10}, // about 21 KiB
		{workerProgram, 192 << 10},    // about 128 KiB
	} {
		exe := filepath.Join(dir, filepath.Base(tc.program))
		build := exec.Command("go", "build", "-trimpath", "-tags", "netgo osusergo", "-ldflags", "-s -w", "-o", exe, tc.program)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", tc.program, err, out)
		}
		run := exec.Command(exe) // no arguments: usage, after every init
		run.Env = append(os.Environ(), "GODEBUG=inittrace=1")
		var stderr bytes.Buffer
		run.Stderr = &stderr
		_ = run.Run()
		total, inits := 0, 0
		sc := bufio.NewScanner(&stderr)
		for sc.Scan() {
			m := initLine.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			inits++
			b, _ := strconv.Atoi(m[2])
			total += b
			if strings.HasPrefix(m[1], module+"/") && b > 4<<10 {
				t.Errorf("%s: the init of %s allocates %d bytes (at most 4 KiB: build it on first use)", tc.program, m[1], b)
			}
		}
		if inits == 0 {
			t.Fatalf("%s printed no init trace:\n%s", tc.program, stderr.String())
		}
		if total > tc.total {
			t.Errorf("%s: its package inits allocate %d bytes, over %d", tc.program, total, tc.total)
		}
		t.Logf("%s: %d package inits, %d bytes", filepath.Base(tc.program), inits, total)
	}
}
