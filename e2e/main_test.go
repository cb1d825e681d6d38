//go:build linux

package e2e

import (
	"debug/buildinfo"
	"errors"
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

// binDir holds the overlord and minion binaries built by TestMain without
// the race detector, which most tests run; raceBinDir holds the same
// binaries built with it when the tests run with -race or -race-product
// (else it is binDir), for the few tests that look for data races in the
// product (startRaceFleet). See docs/testing.md.
var binDir, raceBinDir string

// raceBinaries, with -race-binaries=all, makes every fleet (and script)
// run the race-built binaries: the whole suite looking for data races in
// the product, several times slower than make test.
var raceBinaries = flag.String("race-binaries", "some", "which e2e tests run race-built binaries (with -race or -race-product): some (startRaceFleet) or all")

// raceProductFlag builds the race binaries without the tests themselves
// running under the race detector: make test runs e2e so, since the
// detector finds nothing in this harness but costs it a CPU-minute.
var raceProductFlag = flag.Bool("race-product", false, "build raceBinDir's binaries with the race detector even if the tests are not (make test)")

// raceProduct reports whether raceBinDir's binaries are built with the
// race detector: the tests run with -race, or with -race-product. Set by
// TestMain.
var raceProduct bool

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// minParallel is how many tests run processes at once at least, unless
// -parallel says otherwise: the tests spend most of their time waiting on
// the processes they start, so -parallel's default (GOMAXPROCS) would
// leave a small machine idle.
const minParallel = 6

// places bounds how many tests run processes at once: a test takes one
// for its fleet (startFleet, takePlace), a script for its whole run
// (setupScript). testing's own bound (-parallel) is lifted unless given,
// so that every parallel test starts at once and waits here: then a test
// that spends a minute waiting for time to pass (startIdleFleet) takes no
// place and starts first, instead of whenever testing picks it.
var places chan struct{}

func run(m *testing.M) int {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	n := max(runtime.GOMAXPROCS(0), minParallel)
	if explicit {
		v, err := strconv.Atoi(flag.Lookup("test.parallel").Value.String())
		if err != nil || v < 1 {
			fmt.Fprintln(os.Stderr, "e2e: -parallel:", flag.Lookup("test.parallel").Value, err)
			return 2
		}
		n = v
	} else if err := flag.Set("test.parallel", "1000"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	places = make(chan struct{}, n)
	if *raceBinaries != "some" && *raceBinaries != "all" {
		fmt.Fprintf(os.Stderr, "e2e: -race-binaries %q: want some or all\n", *raceBinaries)
		return 2
	}
	dir, err := os.MkdirTemp("", "overlord-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	raceProduct = raceEnabled || *raceProductFlag
	plain, race := filepath.Join(dir, "plain"), filepath.Join(dir, "race")
	if !raceProduct {
		race = plain
	}
	for _, d := range []string{plain, race} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
	}
	if err := buildAll(plain, race); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	binDir, raceBinDir = plain, race
	if *raceBinaries == "all" {
		binDir = race
	}
	return m.Run()
}

// takePlace waits for one of the places of the tests running processes,
// and gives it back when t ends (after the cleanups registered after it).
func takePlace(t testing.TB) {
	places <- struct{}{}
	t.Cleanup(func() { <-places })
}

// buildAll builds both binaries into plain without the race detector and,
// if race is another directory, into race with it, at the same time.
func buildAll(plain, race string) error {
	errs := make(chan error, 2)
	go func() { errs <- build(plain, false) }()
	n := 1
	if race != plain {
		go func() { errs <- build(race, true) }()
		n++
	}
	var err error
	for range n {
		err = errors.Join(err, <-errs)
	}
	return err
}

// build compiles both binaries into dir, with the race detector if race.
func build(dir string, race bool) error {
	// go test puts its own GOROOT/bin first on the tests' PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the tests build the binaries with the go command: %w", err)
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if race {
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
// gets: the binaries of bin (binDir or raceBinDir) first on PATH, and no
// one-second sleep at exit from race-enabled binaries.
func binEnv(bin string) []string {
	gorace := "atexit_sleep_ms=0"
	if v := os.Getenv("GORACE"); v != "" {
		gorace = v + " " + gorace
	}
	return []string{
		"PATH=" + bin + string(filepath.ListSeparator) + os.Getenv("PATH"),
		"GORACE=" + gorace,
		"NO_COLOR=1",
	}
}

// TestBinaries checks what the tests rely on: binDir's binaries are built
// without the race detector (unless -race-binaries=all), raceBinDir's
// with it when the tests run with -race or -race-product, so that startRaceFleet's tests
// do look for data races.
func TestBinaries(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		dir  string
		race bool
	}{
		{binDir, raceProduct && *raceBinaries == "all"},
		{raceBinDir, raceProduct},
	} {
		for _, b := range []string{"overlord", "minion"} {
			info, err := buildinfo.ReadFile(filepath.Join(tt.dir, b))
			if err != nil {
				t.Fatal(err)
			}
			race := false
			for _, s := range info.Settings {
				race = race || s.Key == "-race" && s.Value == "true"
			}
			if race != tt.race {
				t.Errorf("%s built with -race=%v, want %v", filepath.Join(tt.dir, b), race, tt.race)
			}
			if b != "minion" {
				continue
			}
			// The minion starts a runner process (itself) for every
			// async job: it must not link the overlord's etcd client,
			// whose start-up (gRPC, protobuf) costs each one about 6 ms
			// of CPU and 5 MB of binary.
			for _, d := range info.Deps {
				if strings.HasPrefix(d.Path, "go.etcd.io/etcd/") || strings.HasPrefix(d.Path, "google.golang.org/grpc") {
					t.Errorf("%s links %s", filepath.Join(tt.dir, b), d.Path)
				}
			}
		}
	}
}
