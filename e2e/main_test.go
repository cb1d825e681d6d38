//go:build linux

package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// binDir holds the overlord and minion binaries built by TestMain.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// minParallel is how many tests run at once at least, unless -parallel
// says otherwise: the tests spend most of their time waiting on the
// processes they start, so -parallel's default (GOMAXPROCS) would leave a
// small machine idle. Two tests spend 80 s waiting out a minion's
// minute of absence (queue_test.go): six places keep the others moving.
const minParallel = 6

func run(m *testing.M) int {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit && runtime.GOMAXPROCS(0) < minParallel {
		if err := flag.Set("test.parallel", strconv.Itoa(minParallel)); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
	}
	dir, err := os.MkdirTemp("", "overlord-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	binDir = dir
	return m.Run()
}

// build compiles both binaries into dir, with the race detector when the
// tests themselves run with it, so that races in the product show up too.
func build(dir string) error {
	// go test puts its own GOROOT/bin first on the tests' PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the tests build the binaries with the go command: %w", err)
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/overlordhq/overlord/cmd/overlord", "github.com/overlordhq/overlord/cmd/minion")
	cmd := exec.Command(gobin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// binEnv returns environment variables every binary started by the tests
// gets: the binaries first on PATH, and no one-second sleep at exit from
// race-enabled binaries.
func binEnv() []string {
	gorace := "atexit_sleep_ms=0"
	if v := os.Getenv("GORACE"); v != "" {
		gorace = v + " " + gorace
	}
	return []string{
		"PATH=" + binDir + string(filepath.ListSeparator) + os.Getenv("PATH"),
		"GORACE=" + gorace,
		"NO_COLOR=1",
	}
}
