package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"gopkg.in/yaml.v3"

	"github.com/overlordhq/overlord/internal/termtext"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// Output formats.
const (
	formatText   = "text"
	formatJSON   = "json"
	formatNDJSON = "ndjson"
	formatYAML   = "yaml"
)

var allFormats = []string{formatText, formatJSON, formatNDJSON, formatYAML}

// outputFlag adds -o/--output to cmd, validated and completable.
func outputFlag(cmd *cobra.Command, dst *string, formats ...string) {
	if len(formats) == 0 {
		formats = allFormats
	}
	cmd.Flags().StringVarP(dst, "output", "o", formatText, "output format: "+strings.Join(formats, "|"))
	_ = cmd.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return formats, cobra.ShellCompDirectiveNoFileComp
	})
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		for _, f := range formats {
			if *dst == f {
				if prev != nil {
					return prev(c, args)
				}
				return nil
			}
		}
		return usageError("unknown output format %q (want %s)", *dst, strings.Join(formats, ", "))
	}
}

// writeJSON writes v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeYAML writes v as YAML, going through JSON so that the field names,
// their order and raw results are the same as in JSON output.
func writeYAML(w io.Writer, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil { // JSON is YAML
		return err
	}
	blockStyle(&doc)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	return enc.Close()
}

// blockStyle clears the flow and quoting styles the JSON source gave the
// nodes; the encoder quotes what needs it.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// rawFlag adds --raw to cmd, for the commands whose text output shows
// what minions sent.
func rawFlag(cmd *cobra.Command, dst *bool) {
	cmd.Flags().BoolVar(dst, "raw", false, "text output: print minions' output byte for byte, control characters included (by default they are shown as ^[, ^G, ...)")
}

// checkRaw refuses --raw with a format other than text, which carries
// minions' output exactly already.
func checkRaw(raw bool, format string) error {
	if raw && format != formatText {
		return usageError("--raw changes text output only; -o %s carries minions' output exactly already", format)
	}
	return nil
}

// colour reports whether to colour output written to w.
func colour(w io.Writer, getenv func(string) string) bool {
	f, ok := w.(*os.File)
	return ok && getenv("NO_COLOR") == "" && getenv("TERM") != "dumb" && term.IsTerminal(int(f.Fd()))
}

// display holds the flags that shape how a run is shown, shared by call,
// cp, fetch, job status (and every command that prints a job as it runs):
// the progress line, --group, --prefix and --output-dir. Register them
// with displayFlags.
type display struct {
	progress, noProgress bool
	group, prefix        bool
	outputDir            string

	live progressSink // the progress line while a run is shown, else nil
}

// displayFlags adds --progress, --no-progress, -b/--group, --prefix and
// --output-dir to cmd, checked before the command runs: --group and
// --prefix change text output only and exclude each other; none of them
// goes with --async, whose results come later (job status shows them).
func displayFlags(cmd *cobra.Command, d *display) {
	f := cmd.Flags()
	f.BoolVar(&d.progress, "progress", false, "show the progress line on stderr even when it is not a terminal")
	f.BoolVar(&d.noProgress, "no-progress", false, "never show the progress line (shown by default when stderr is a terminal)")
	f.BoolVarP(&d.group, "group", "b", false, "text output: print minions with the same output once, under their folded names (web[1-3,7] (4)); printed at the end")
	f.BoolVar(&d.prefix, "prefix", false, "text output: begin every line of output with the minion's name (NAME: ...), for grep")
	f.StringVar(&d.outputDir, "output-dir", "", "write each minion's NAME.stdout, NAME.stderr and NAME.json into `DIR` as its result arrives (made 0700 if missing; files 0600)")
	_ = cmd.MarkFlagDirname("output-dir")
	if ex := displayExamples[cmd.Name()]; ex != "" {
		cmd.Example = strings.TrimRight(cmd.Example, "\n") + "\n" + ex
	}
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if prev != nil {
			if err := prev(c, args); err != nil {
				return err
			}
		}
		format := formatText
		if o := c.Flags().Lookup("output"); o != nil {
			format = o.Value.String()
		}
		async := false
		if a := c.Flags().Lookup("async"); a != nil {
			async = a.Value.String() == "true"
		}
		return d.check(format, async)
	}
}

// displayExamples are the --help examples of the display flags, by
// command.
var displayExamples = map[string]string{
	"call": `  overlord call 'web*' command.run 'uname -r' -b          # identical output once: web[1-3,7] (4)
  overlord call 'web*' command.run 'dmesg | tail' --prefix | grep -i error
  overlord call 'web*' command.run 'sha256sum /etc/passwd' --output-dir out  # out/web1.stdout, ...`,
	"script": `  overlord script 'web*' ./check.sh -b --output-dir out`,
	"status": `  overlord job status 019a2b3c --wait -b
  overlord job status 019a2b3c --output-dir out --no-progress`,
	"cp":    `  overlord cp ./tool 'web*':/usr/local/bin/ --no-progress --output-dir copies`,
	"fetch": `  overlord fetch 'web*':/etc/os-release ./os -b`,
}

// check refuses display flags that do not go together.
func (d *display) check(format string, async bool) error {
	switch {
	case d.progress && d.noProgress:
		return usageError("--progress and --no-progress: give one of them")
	case d.group && d.prefix:
		return usageError("--group and --prefix: give one of them (--group prints each output once for many minions, --prefix names the minion on every line)")
	case d.group && format != formatText:
		return usageError("--group changes text output only; -o %s has every minion's result already", format)
	case d.prefix && format != formatText:
		return usageError("--prefix changes text output only; -o %s names every minion's result already", format)
	case async && (d.group || d.prefix || d.outputDir != ""):
		return usageError("--group, --prefix and --output-dir show results, which --async does not wait for; use them with 'overlord job status ID --wait'")
	}
	return nil
}

// Batch tells the progress line that batch k of n has started (rolling
// batches call it through the engine's callback). Safe to call when no
// progress line is shown.
func (d *display) Batch(k, n, started int) {
	if d != nil && d.live != nil {
		d.live.Batch(k, n, started)
	}
}

// jobPrinter prints a job's results in one format: Result as each
// minion's result arrives (call), Done once with the whole job.
type jobPrinter struct {
	w      io.Writer
	format string
	colour bool
	raw    bool   // text: print what minions sent as it is (--raw)
	jobID  string // for ndjson lines, once known
	prefix bool   // text: NAME: before every line (--prefix)

	groups *resultGroups // text with --group: blocks kept for Done
	outDir *outputDir    // --output-dir, or nil
	outErr error         // the first failure to write into outDir
	live   progressSink  // fed every result, or nil
}

// clean makes text from a minion safe for a terminal, unless --raw.
func (p *jobPrinter) clean(s string) string {
	if p.raw {
		return s
	}
	return termtext.Visible(s)
}

// cleanLine is clean for text that must stay on one line.
func (p *jobPrinter) cleanLine(s string) string {
	if p.raw {
		return s
	}
	return termtext.Line(s)
}

func (p *jobPrinter) paint(code, s string) string {
	if !p.colour {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// Result prints one minion's result as it arrives (text and ndjson),
// writes it into --output-dir and counts it on the progress line.
func (p *jobPrinter) Result(name string, r status.Result) error {
	p.keep(name, r)
	return p.print(name, r)
}

// keep writes a result into --output-dir and counts it on the progress
// line: what Result does besides printing.
func (p *jobPrinter) keep(name string, r status.Result) {
	if p.outDir != nil {
		if err := p.outDir.write(name, r); err != nil && p.outErr == nil {
			p.outErr = err
		}
	}
	if p.live != nil {
		p.live.Result(name, r)
	}
}

// print prints a result as it arrives: a text block (kept for Done with
// --group) or an ndjson line.
func (p *jobPrinter) print(name string, r status.Result) error {
	switch p.format {
	case formatText:
		b := p.block(r)
		if p.groups != nil {
			p.groups.add(name, b)
			return nil
		}
		return p.writeBlock(name, b)
	case formatNDJSON:
		line := struct {
			Type  string `json:"type"`
			JobID string `json:"job_id,omitempty"`
			Name  string `json:"minion"`
			status.Result
		}{"result", p.jobID, name, r}
		return writeJSONLine(p.w, line)
	}
	return nil
}

// Done prints the finished job: the whole document (json, yaml) or the
// summary (text, ndjson), after the groups of --group.
func (p *jobPrinter) Done(job status.Job) error {
	switch p.format {
	case formatJSON:
		return writeJSON(p.w, job)
	case formatYAML:
		return writeYAML(p.w, job)
	case formatNDJSON:
		job.Minions = nil
		line := struct {
			Type string `json:"type"`
			status.Job
			Minions *struct{} `json:"minions,omitempty"`
		}{Type: "summary", Job: job}
		return writeJSONLine(p.w, line)
	}
	if p.groups != nil {
		for _, g := range p.groups.sorted() {
			if err := p.writeGroup(g); err != nil {
				return err
			}
		}
	}
	s := job.Summary
	parts := []string{fmt.Sprintf("%d ok", s.OK)}
	if s.Failed > 0 {
		failed := fmt.Sprintf("%d failed", s.Failed)
		if s.Skipped > 0 {
			// Of the failed, those a batched job never started: not
			// minions that ran and failed.
			failed += fmt.Sprintf(" (%d skipped)", s.Skipped)
		}
		parts = append(parts, p.paint("31", failed))
	} else {
		parts = append(parts, "0 failed")
	}
	if s.Pending > 0 {
		parts = append(parts, fmt.Sprintf("%d pending", s.Pending))
	}
	_, err := fmt.Fprintf(p.w, "%d minion%s: %s (job %s, %s)\n", s.Total, plural(s.Total), strings.Join(parts, ", "), job.JobID, job.State)
	return err
}

// All prints every minion of a job, sorted by name, then Done.
func (p *jobPrinter) All(job status.Job) error {
	p.jobID = job.JobID
	names := make([]string, 0, len(job.Minions))
	for n := range job.Minions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := p.Result(n, job.Minions[n]); err != nil {
			return err
		}
	}
	return p.Done(job)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// A block is one minion's result as text: a header line, NAME: STATUS
// DETAIL, then its output lines as the minion sent them (made safe for a
// terminal), not indented, so that they read and grep as they would on
// the minion. Stderr follows under a line of its own, NAME stderr:.
type block struct {
	colour string // the name's colour: green ok, red failed, yellow not finished
	status string // after "NAME:", if anything
	detail string // after the status, left out by --group: duration, minion job
	out    []string
	err    []string
	notes  []string // said by the overlord about the output (truncation)
}

// key is what --group compares: everything but the detail.
func (b block) key() string {
	return strings.Join([]string{b.colour, b.status, strings.Join(b.out, "\n"), strings.Join(b.err, "\n"), strings.Join(b.notes, "\n")}, "\x00")
}

// block renders one minion's result. What came from the minion goes
// through clean.
func (p *jobPrinter) block(r status.Result) block {
	var b block
	switch {
	case r.Queued():
		// Waiting for its minion to come back (--queue).
		b.colour, b.status = "33", "queued since "+r.QueuedSince.Local().Format(time.TimeOnly)
		if r.LastError != nil {
			b.status += " (" + p.cleanLine(string(r.LastError.Kind)) + ": " + p.cleanLine(oneLine(r.LastError.Message)) + ")"
		}
		return b
	case r.State != status.Finished:
		b.colour, b.status = "33", string(r.State)
		if r.MinionJobID != "" {
			b.detail = fmt.Sprintf("(minion job %s)", p.cleanLine(r.MinionJobID))
		}
		return b
	case r.OK:
		b.colour = "32"
	default:
		e := r.Error
		if e == nil {
			e = &status.Error{Kind: status.KindInternal, Message: "failed without an error"}
		}
		b.colour = "31"
		b.status = p.paint("31", "ERROR "+p.cleanLine(string(e.Kind))+":") + " " + p.cleanLine(oneLine(e.Message))
	}
	p.resultText(&b, r)
	if r.Reconciled && r.ErrorBeforeReconcile != nil {
		// The minion's own result, got after the overlord had ended the
		// entry itself (job reconcile).
		b.detail = strings.TrimSpace(b.detail + " (reconciled; was " + p.cleanLine(string(r.ErrorBeforeReconcile.Kind)) + ")")
	}
	return b
}

// resultText renders a result value: a scalar on the header line (or
// under it for a failure), a command's output as lines, a copied file on
// one line, anything else as pretty-printed JSON.
func (p *jobPrinter) resultText(b *block, r status.Result) {
	if len(r.Result) == 0 {
		return
	}
	addStatus := func(s string) {
		if b.status == "" {
			b.status = s
		} else {
			b.status += " " + s
		}
	}
	if c, ok := commandOf(r.Result); ok {
		if r.OK {
			addStatus(fmt.Sprintf("exit %d", c.ExitCode))
			b.detail = fmt.Sprintf("(%d ms)", r.DurationMS)
		} else {
			addStatus(fmt.Sprintf("(exit %d)", c.ExitCode))
		}
		b.out = lines(p.clean(c.stdout()))
		b.err = lines(p.clean(c.stderr()))
		if note := c.truncation(); note != "" {
			b.notes = append(b.notes, note)
		}
		return
	}
	if line, ok := fileLine(r.Result); ok {
		addStatus(p.cleanLine(line))
		return
	}
	trimmed := bytes.TrimSpace(r.Result)
	if len(trimmed) > 0 && trimmed[0] != '{' && trimmed[0] != '[' {
		if r.OK {
			addStatus(p.cleanLine(string(trimmed)))
		} else {
			b.out = []string{p.cleanLine(string(trimmed))}
		}
		return
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, trimmed, "", "  ") != nil {
		pretty.Write(trimmed)
	}
	b.out = lines(p.clean(pretty.String()))
}

// writeBlock prints one minion's block, with --prefix NAME: before
// every line.
func (p *jobPrinter) writeBlock(name string, b block) error {
	return p.write(p.paint(b.colour, name), p.paint(b.colour, name), b, true)
}

// writeGroup prints the minions of one --group group under their folded
// names and their number: web[1-3,7] (4): exit 0.
func (p *jobPrinter) writeGroup(g *resultGroup) error {
	folded := p.cleanLine(foldNames(g.names))
	label := fmt.Sprintf("%s (%d)", p.paint(g.b.colour, folded), len(g.names))
	return p.write(label, p.paint(g.b.colour, folded), g.b, false)
}

// write prints a block under label; name is what NAME stderr: and
// --prefix use.
func (p *jobPrinter) write(label, name string, b block, detail bool) error {
	var w strings.Builder
	w.WriteString(label)
	w.WriteByte(':')
	if b.status != "" {
		w.WriteByte(' ')
		w.WriteString(b.status)
	}
	if detail && b.detail != "" {
		w.WriteByte(' ')
		w.WriteString(b.detail)
	}
	w.WriteByte('\n')
	outPrefix, errPrefix := "", ""
	if p.prefix {
		outPrefix, errPrefix = name+": ", name+" stderr: "
	}
	for _, l := range b.out {
		w.WriteString(outPrefix + l + "\n")
	}
	if !p.prefix && len(b.err) > 0 {
		w.WriteString(name + " stderr:\n")
	}
	for _, l := range b.err {
		w.WriteString(errPrefix + l + "\n")
	}
	for _, l := range b.notes {
		w.WriteString(outPrefix + l + "\n")
	}
	_, err := io.WriteString(p.w, w.String())
	return err
}

// lines splits s into its lines, without the last newline; none for "".
func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// commandResult is a command.run result (and every method's that
// returns one: script, plugins).
type commandResult struct {
	Stdout       *string `json:"stdout"`
	Stderr       *string `json:"stderr"`
	ExitCode     int     `json:"exit_code"`
	Truncated    bool    `json:"truncated"`
	StdoutBase64 string  `json:"stdout_base64"`
	StderrBase64 string  `json:"stderr_base64"`
}

// commandOf decodes raw if it is a command's result: stdout and an exit
// code at least.
func commandOf(raw json.RawMessage) (commandResult, bool) {
	var c struct {
		commandResult
		ExitCode *int `json:"exit_code"`
	}
	if json.Unmarshal(raw, &c) != nil || c.Stdout == nil || c.ExitCode == nil {
		return commandResult{}, false
	}
	c.commandResult.ExitCode = *c.ExitCode
	return c.commandResult, true
}

// stdout and stderr return the bytes the command wrote.
func (c commandResult) stdout() string { return exact(*c.Stdout, c.StdoutBase64) }
func (c commandResult) stderr() string {
	if c.Stderr == nil {
		return ""
	}
	return exact(*c.Stderr, c.StderrBase64)
}

// truncation says which stream max_output cut and how to get more, or
// "" if none. The result says only that something was cut: a cut stream
// holds exactly max_output bytes, the other at most that, so the longer
// one was cut (both when they are as long).
func (c commandResult) truncation() string {
	if !c.Truncated {
		return ""
	}
	out, errs := len(c.stdout()), len(c.stderr())
	limit := max(out, errs)
	var cut []string
	if out == limit {
		cut = append(cut, "stdout")
	}
	if errs == limit {
		cut = append(cut, "stderr")
	}
	what := strings.Join(cut, " and ")
	if limit >= rpc.MaxOutput {
		return fmt.Sprintf("(%s truncated at %s, the most max_output allows: write the output to a file on the minion and fetch it)", what, sizeText(limit))
	}
	return fmt.Sprintf("(%s truncated at %s: call again with max_output=%d for up to %s)", what, sizeText(limit), rpc.MaxOutput, sizeText(rpc.MaxOutput))
}

// sizeText writes n bytes for people: 1 MiB, 64 KiB, 1500 bytes.
func sizeText(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// exact returns the bytes a command wrote: those in the base64 field when
// the minion sent one (the output was not valid UTF-8), else the text.
func exact(text, b64 string) string {
	if b64 == "" {
		return text
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return text
	}
	return string(raw)
}

// shaShown is how many hex digits of a copied file's sha256 text shows.
const shaShown = 12

// fileLine renders a cp or fetch result, {path, size, sha256, mode} and
// nothing else, as one line: path, size, sha256 prefix and mode.
func fileLine(raw json.RawMessage) (string, bool) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil || len(fields) != 4 {
		return "", false
	}
	var f overlord.FileResult
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if dec.Decode(&f) != nil || f.Path == "" || f.SHA256 == "" || f.Mode == "" {
		return "", false
	}
	sum := f.SHA256
	if len(sum) > shaShown {
		sum = sum[:shaShown]
	}
	return fmt.Sprintf("%s  %d bytes  sha256 %s  mode %s", f.Path, f.Size, sum, f.Mode), true
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// newJobPrinter returns a printer for format with d's --group, --prefix
// and --output-dir; the directory is made and opened here, before
// anything runs.
func (a *App) newJobPrinter(format string, raw bool, d *display) (*jobPrinter, error) {
	pr := &jobPrinter{w: a.Stdout, format: format, colour: colour(a.Stdout, a.Getenv), raw: raw && format == formatText}
	if d == nil {
		return pr, nil
	}
	pr.prefix = d.prefix
	if d.group {
		pr.groups = &resultGroups{}
	}
	if d.outputDir != "" {
		out, err := openOutputDir(d.outputDir)
		if err != nil {
			return nil, &ExitError{Code: status.ExitUsage, Err: err}
		}
		pr.outDir = out
	}
	return pr, nil
}
