package suggest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/clawrun/clawrun/runtime/policy"
)

func denial(path string, access ...string) FileDenial { return FileDenial{Path: path, Access: access} }

// grantsString is grants as "rw /a, ro /b".
func grantsString(grants []FileGrant) string {
	var out []string
	for _, g := range grants {
		mode := "ro"
		if g.Write {
			mode = "rw"
		}
		out = append(out, mode+" "+g.Path)
	}
	return strings.Join(out, ", ")
}

// TestSuggestFiles: each Landlock denial becomes the narrowest sensible
// grant, or a note saying why none: never /, never what the floor denies,
// never a write that lifts a tree the policy made read-only.
func TestSuggestFiles(t *testing.T) {
	base := policy.Layer{ReadOnly: []string{"/"}, ReadWrite: []string{"/tmp"}}
	withRO := policy.Layer{ReadOnly: []string{"/", "/etc", "/work/ref"}, ReadWrite: []string{"/tmp"}}
	floor := &policy.Layer{ReadOnly: []string{"/"}, ReadWrite: []string{"/tmp", "/work", "/data/out/log"}}
	for _, tc := range []struct {
		name    string
		own     policy.Layer
		floor   *policy.Layer
		denials []FileDenial
		want    string
		note    string // a note that must be made ("" for none)
	}{
		{name: "a refused write of a file: its directory read_write",
			own: base, denials: []FileDenial{denial("/work/out", "fs.write_file")}, want: "rw /work"},
		{name: "a refused create names the directory: it read_write",
			own: base, denials: []FileDenial{denial("/work", "fs.make_reg")}, want: "rw /work"},
		{name: "a refused read: its directory read_only",
			own: policy.Layer{ReadWrite: []string{"/tmp"}}, denials: []FileDenial{denial("/data/in", "fs.read_file")}, want: "ro /data"},
		{name: "a refused execute is a read",
			own: policy.Layer{ReadWrite: []string{"/tmp"}}, denials: []FileDenial{denial("/opt/tool/bin/run", "fs.execute")}, want: "ro /opt/tool/bin"},
		{name: "a refused listing names the directory",
			own: policy.Layer{ReadWrite: []string{"/tmp"}}, denials: []FileDenial{denial("/srv/data", "fs.read_dir")}, want: "ro /srv/data"},
		{name: "read and write in one directory: read_write once, with both reasons",
			own:     policy.Layer{ReadWrite: []string{"/tmp"}},
			denials: []FileDenial{denial("/work/a", "fs.read_file"), denial("/work/b", "fs.write_file"), denial("/work/sub/c", "fs.read_file")},
			want:    "rw /work"},
		{name: "a file directly under /: the file, never /",
			own: base, denials: []FileDenial{denial("/out.txt", "fs.write_file")}, want: "rw /out.txt"},
		{name: "a create directly in /: nothing",
			own: base, denials: []FileDenial{denial("/", "fs.make_reg")}, note: "file / (fs.make_reg): it would open /"},
		{name: "a device: the device, not /dev",
			own: base, denials: []FileDenial{denial("/dev/kvm", "fs.ioctl_dev", "fs.write_file")}, want: "rw /dev/kvm"},
		{name: "under a floor that allows only the file: the file",
			own: base, floor: floor, denials: []FileDenial{denial("/data/out/log", "fs.write_file")}, want: "rw /data/out/log"},
		{name: "what the floor denies: nothing",
			own: base, floor: floor, denials: []FileDenial{denial("/srv/x", "fs.write_file")}, note: "file /srv/x (fs.write_file): the floor policy denies it"},
		{name: "a write inside a directory the policy lists read_only: nothing",
			own: withRO, denials: []FileDenial{denial("/etc/ssl/x", "fs.write_file")}, note: "the policy lists /etc read_only: not widened"},
		{name: "a write in a directory holding a read_only entry: the file only",
			own: withRO, denials: []FileDenial{denial("/work/out", "fs.write_file")}, want: "rw /work/out"},
		{name: "a create in a directory holding a read_only entry: nothing",
			own: withRO, denials: []FileDenial{denial("/work", "fs.make_reg")}, note: "/work holds a path the policy lists read_only"},
		{name: "a read inside a read_only directory's tree is no write: learned",
			own: policy.Layer{ReadOnly: []string{"/etc"}}, denials: []FileDenial{denial("/usr/lib/x.so", "fs.read_file")}, want: "ro /usr/lib"},
		{name: "not a path, not a file right: nothing",
			own:     base,
			denials: []FileDenial{denial("", "net.bind_tcp"), denial("/run/sock", "scope.abstract_unix_socket")},
			note:    "not a file access"},
		{name: "a child of a granted directory is covered",
			own:     policy.Layer{ReadWrite: []string{"/tmp"}},
			denials: []FileDenial{denial("/a/b/c", "fs.read_file"), denial("/a/x", "fs.write_file")},
			want:    "rw /a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			notes := newNoteSet()
			got := suggestFiles(tc.own, tc.floor, tc.denials, notes)
			if s := grantsString(got); s != tc.want {
				t.Errorf("grants %q, want %q (notes %q)", s, tc.want, notes.lines())
			}
			if tc.note != "" && !strings.Contains(strings.Join(notes.lines(), "\n"), tc.note) {
				t.Errorf("notes %q lack %q", notes.lines(), tc.note)
			}
			for _, g := range got {
				if g.Path == "/" || len(g.Because) == 0 {
					t.Errorf("grant %+v", g)
				}
				if tc.floor != nil && !tc.floor.Allows(g.Path, g.Write) {
					t.Errorf("grant %+v is wider than the floor", g)
				}
			}
		})
	}
}

// TestSuggestLearnsFiles: Suggest puts the grants in filesystem_policy,
// the YAML says they were learned from Landlock denials and reads back;
// a policy without filesystem_policy gets none.
func TestSuggestLearnsFiles(t *testing.T) {
	current := parse(t, "learning", learning)
	in := Input{Current: current, FileDenials: []FileDenial{denial("/work/out", "fs.write_file"), denial("/data/in", "fs.read_file")}}
	s, err := Suggest(in)
	if err != nil {
		t.Fatal(err)
	}
	fs := s.Policy.FilesystemPolicy
	if fmt.Sprint(fs.ReadOnly, fs.ReadWrite) != "[/usr /etc /data] [/tmp /work]" {
		t.Errorf("filesystem_policy %+v", fs)
	}
	text, err := s.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# filesystem_policy: learned from Landlock denials:", "#   read_write /work, for fs.write_file /work/out", "#   read_only /data, for fs.read_file /data/in"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("the YAML lacks %q:\n%s", want, text)
		}
	}
	if p := roundTrip(t, s); fmt.Sprint(p.FilesystemPolicy.ReadWrite) != "[/tmp /work]" {
		t.Errorf("read back: %+v", p.FilesystemPolicy)
	}

	in.Current = parse(t, "net-only", "version: 1\nnetwork_policies: {}\n")
	s, err = Suggest(in)
	if err != nil {
		t.Fatal(err)
	}
	if s.Policy.HasFilesystem || len(s.Files) != 0 || !strings.Contains(strings.Join(s.Notes, "\n"), "file /work/out (fs.write_file): the floor policy denies it") {
		t.Errorf("a policy without filesystem_policy: %+v, notes %q", s.Policy.FilesystemPolicy, s.Notes)
	}
}
