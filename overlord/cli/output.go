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

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"gopkg.in/yaml.v3"

	"github.com/overlordhq/overlord/internal/termtext"
	"github.com/overlordhq/overlord/overlord"
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

// jobPrinter prints a job's results in one format: Result as each
// minion's result arrives (call), Done once with the whole job.
type jobPrinter struct {
	w      io.Writer
	format string
	colour bool
	raw    bool   // text: print what minions sent as it is (--raw)
	jobID  string // for ndjson lines, once known
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

// Result prints one minion's result as it arrives (text and ndjson).
func (p *jobPrinter) Result(name string, r status.Result) error {
	switch p.format {
	case formatText:
		return p.text(name, r)
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
// summary (text, ndjson).
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
	s := job.Summary
	parts := []string{fmt.Sprintf("%d ok", s.OK)}
	if s.Failed > 0 {
		parts = append(parts, p.paint("31", fmt.Sprintf("%d failed", s.Failed)))
	} else {
		parts = append(parts, "0 failed")
	}
	if s.Pending > 0 {
		parts = append(parts, fmt.Sprintf("%d pending", s.Pending))
	}
	_, err := fmt.Fprintf(p.w, "%d minion%s: %s (job %s, %s)\n", s.Total, plural(s.Total), strings.Join(parts, ", "), job.JobID, job.State)
	return err
}

// All prints every minion of a finished job, sorted by name, then Done.
func (p *jobPrinter) All(job status.Job) error {
	if p.format == formatText || p.format == formatNDJSON {
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
	}
	return p.Done(job)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// text prints one minion's result for people.
func (p *jobPrinter) text(name string, r status.Result) error {
	var b strings.Builder
	switch {
	case r.State != status.Finished:
		fmt.Fprintf(&b, "%s: %s", p.paint("33", name), r.State)
		if r.MinionJobID != "" {
			fmt.Fprintf(&b, " (minion job %s)", p.cleanLine(r.MinionJobID))
		}
		b.WriteByte('\n')
	case r.OK:
		fmt.Fprintf(&b, "%s:", p.paint("32", name))
	default:
		e := r.Error
		if e == nil {
			e = &status.Error{Kind: status.KindInternal, Message: "failed without an error"}
		}
		fmt.Fprintf(&b, "%s: %s %s", p.paint("31", name), p.paint("31", "ERROR "+p.cleanLine(string(e.Kind))+":"), p.cleanLine(oneLine(e.Message)))
	}
	if r.State == status.Finished {
		p.writeResultText(&b, r)
	}
	_, err := io.WriteString(p.w, b.String())
	return err
}

// writeResultText renders a result value: a scalar on the same line, a
// command's output as indented blocks, a copied file on one line,
// anything else as indented JSON. What came from the minion goes through
// clean.
func (p *jobPrinter) writeResultText(b *strings.Builder, r status.Result) {
	if len(r.Result) == 0 {
		b.WriteByte('\n')
		return
	}
	var cmd struct {
		Stdout       *string `json:"stdout"`
		Stderr       *string `json:"stderr"`
		ExitCode     *int    `json:"exit_code"`
		Truncated    bool    `json:"truncated"`
		StdoutBase64 string  `json:"stdout_base64"`
		StderrBase64 string  `json:"stderr_base64"`
	}
	if json.Unmarshal(r.Result, &cmd) == nil && cmd.Stdout != nil && cmd.ExitCode != nil {
		if r.OK {
			fmt.Fprintf(b, " exit %d (%d ms)\n", *cmd.ExitCode, r.DurationMS)
		} else {
			fmt.Fprintf(b, " (exit %d)\n", *cmd.ExitCode)
		}
		indent(b, p.clean(exact(*cmd.Stdout, cmd.StdoutBase64)), "    ")
		if cmd.Stderr != nil {
			indent(b, p.clean(exact(*cmd.Stderr, cmd.StderrBase64)), "  ! ")
		}
		if cmd.Truncated {
			b.WriteString("    [output truncated]\n")
		}
		return
	}
	if line, ok := fileLine(r.Result); ok {
		b.WriteByte(' ')
		b.WriteString(p.cleanLine(line))
		b.WriteByte('\n')
		return
	}
	trimmed := bytes.TrimSpace(r.Result)
	if len(trimmed) > 0 && trimmed[0] != '{' && trimmed[0] != '[' {
		if r.OK {
			b.WriteByte(' ')
		} else {
			b.WriteString("\n    ")
		}
		b.WriteString(p.cleanLine(string(trimmed)))
		b.WriteByte('\n')
		return
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, trimmed, "", "  ") != nil {
		pretty.Write(trimmed)
	}
	b.WriteByte('\n')
	indent(b, p.clean(pretty.String()), "    ")
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

func indent(b *strings.Builder, s, prefix string) {
	if s == "" {
		return
	}
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix)
		b.WriteString(line)
		b.WriteByte('\n')
	}
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
