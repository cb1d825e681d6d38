package mount_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/mount"
	"github.com/overlordhq/overlord/status"
)

// fakeRoot returns a root directory whose proc/self/mounts holds table.
func fakeRoot(t *testing.T, table string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "proc/self"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "proc/self/mounts"), []byte(table), 0o444); err != nil {
		t.Fatal(err)
	}
	return root
}

func list(t *testing.T, m mount.Module) ([]mount.Mount, error) {
	t.Helper()
	r := modules.NewRegistry()
	if err := r.Add(m); err != nil {
		t.Fatal(err)
	}
	got, err := r.Call(context.Background(), "mount", "list", nil, nil)
	mounts, ok := got.([]mount.Mount)
	if got != nil && !ok {
		t.Fatalf("result is %T, want []mount.Mount", got)
	}
	return mounts, err
}

func TestList(t *testing.T) {
	tests := []struct {
		name  string
		table string
		want  []mount.Mount
	}{
		{
			name: "typical",
			table: "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n" +
				"/dev/sda1 / ext4 rw,relatime,errors=remount-ro 0 0\n",
			want: []mount.Mount{
				{Device: "proc", Mountpoint: "/proc", FSType: "proc", Options: []string{"rw", "nosuid", "nodev", "noexec", "relatime"}},
				{Device: "/dev/sda1", Mountpoint: "/", FSType: "ext4", Options: []string{"rw", "relatime", "errors=remount-ro"}},
			},
		},
		{
			name:  "space in the mount point",
			table: `/dev/sdb1 /mnt/my\040disk vfat rw 0 0` + "\n",
			want:  []mount.Mount{{Device: "/dev/sdb1", Mountpoint: "/mnt/my disk", FSType: "vfat", Options: []string{"rw"}}},
		},
		{
			name:  "tab, newline and backslash",
			table: `//srv/a\134b /mnt/a\011b\012c cifs rw 0 0` + "\n",
			want:  []mount.Mount{{Device: `//srv/a\b`, Mountpoint: "/mnt/a\tb\nc", FSType: "cifs", Options: []string{"rw"}}},
		},
		{
			name:  "escaped comma stays inside its option",
			table: `host:/x /x fuse.sshfs rw,user_id=0,label=a\054b 0 0` + "\n",
			want:  []mount.Mount{{Device: "host:/x", Mountpoint: "/x", FSType: "fuse.sshfs", Options: []string{"rw", "user_id=0", "label=a,b"}}},
		},
		{
			name:  "a backslash that is not an escape",
			table: `dev /a\9\04 ext4 rw 0 0` + "\n",
			want:  []mount.Mount{{Device: "dev", Mountpoint: `/a\9\04`, FSType: "ext4", Options: []string{"rw"}}},
		},
		{
			name:  "short and blank lines are skipped",
			table: "\nbroken line\n" + "tmpfs /tmp tmpfs rw 0 0\n" + "   \n",
			want:  []mount.Mount{{Device: "tmpfs", Mountpoint: "/tmp", FSType: "tmpfs", Options: []string{"rw"}}},
		},
		{
			name:  "no final newline",
			table: "tmpfs /run tmpfs rw,mode=755",
			want:  []mount.Mount{{Device: "tmpfs", Mountpoint: "/run", FSType: "tmpfs", Options: []string{"rw", "mode=755"}}},
		},
		{name: "empty table", table: "", want: []mount.Mount{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := list(t, mount.Module{FS: os.DirFS(fakeRoot(t, tt.table))})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

// An empty table is [] on the wire, not null.
func TestListEmptyJSON(t *testing.T) {
	got, err := list(t, mount.Module{FS: os.DirFS(fakeRoot(t, ""))})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(got)
	if string(data) != "[]" {
		t.Errorf("JSON %s, want []", data)
	}
}

func TestListMissingTable(t *testing.T) {
	_, err := list(t, mount.Module{FS: os.DirFS(t.TempDir())})
	if status.KindOf(err) != status.KindModuleError || !strings.Contains(err.Error(), "cannot read the mount table") {
		t.Errorf("error %v, want module_error about the mount table", err)
	}
}

// A table over the cap is listed up to the last whole line before it, and
// the call says so.
// (With a cap of 64 KiB: parsing 16 MiB under the race detector takes
// a CPU for 17 s.)
func TestListTooLarge(t *testing.T) {
	const limit = 64 << 10
	line := "tmpfs /run/" + strings.Repeat("x", 80) + " tmpfs rw 0 0\n"
	n := limit/len(line) + 10
	got, err := list(t, mount.Module{FS: os.DirFS(fakeRoot(t, strings.Repeat(line, n))), Max: limit})
	if status.KindOf(err) != status.KindModuleError || !strings.Contains(err.Error(), "larger than 64 KiB") {
		t.Errorf("error %v, want module_error saying the table is too large", err)
	}
	if want := limit / len(line); len(got) != want {
		t.Errorf("listed %d mounts, want the %d whole lines under the cap", len(got), want)
	}
}

// Smoke test against the machine the tests run on.
func TestListRealSystem(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("mount.list reads /proc/self/mounts")
	}
	got, err := list(t, mount.Module{})
	if err != nil {
		t.Fatal(err)
	}
	var root, proc bool
	for _, m := range got {
		root = root || m.Mountpoint == "/"
		proc = proc || (m.Mountpoint == "/proc" && m.FSType == "proc")
		if m.Device == "" || m.FSType == "" || len(m.Options) == 0 {
			t.Errorf("incomplete entry %+v", m)
		}
	}
	if !root || !proc {
		t.Errorf("no / or no /proc (proc) among %d mounts: %+v", len(got), got)
	}
}
