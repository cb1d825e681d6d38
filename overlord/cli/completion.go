package cli

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/builtin"
	"github.com/overlordhq/overlord/overlord"
)

// completionLockTimeout bounds how long shell completion waits for
// overlord.db: a completion that has to wait for a busy store offers
// nothing rather than freeze the shell.
const completionLockTimeout = 150 * time.Millisecond

// completionJobs is how many of the newest jobs `job status <TAB>` offers.
const completionJobs = 30

// addCompletions gives the commands that take a target, a method or a
// job their dynamic completion (cobra's `completion bash|zsh|fish`
// scripts call `overlord __complete ...`).
func (a *App) addCompletions(root *cobra.Command) {
	byPath := map[string]cobra.CompletionFunc{
		"call":          a.completeCall,
		"modules":       a.completeModulesArgs,
		"minion facts":  a.completeTargetArg,
		"minion list":   a.completeTargetArg,
		"fetch":         a.completeFetchArgs,
		"cp":            a.completeCpArgs,
		"script":        a.completeScriptArgs,
		"job status":    a.completeJobArg,
		"job cancel":    a.completeJobArg,
		"group add":     a.completeGroupArgs,
		"group remove":  a.completeGroupArgs,
		"minion remove": a.completeMinionArgs,
	}
	var walk func(c *cobra.Command, path string)
	walk = func(c *cobra.Command, path string) {
		if fn, ok := byPath[path]; ok && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = fn
		}
		for _, sub := range c.Commands() {
			p := sub.Name()
			if path != "" {
				p = path + " " + p
			}
			walk(sub, p)
		}
	}
	walk(root, "")
}

// completionStore returns overlord.db for reading by completion, with a
// short lock timeout.
func (a *App) completionStore() *jobs.Store {
	dir := a.stateDir
	if dir == "" {
		dir = a.Getenv("OVERLORD_STATE_DIR")
	}
	if dir == "" {
		dir = overlord.DefaultStateDir()
	}
	if s, _, _, _, err := a.storeAt(dir, completionLockTimeout); err == nil {
		return s // --store, OVERLORD_STORE or the state directory's store.json
	}
	return jobs.New(filepath.Join(dir, overlord.DBFile), completionLockTimeout)
}

// completeTargetArg completes TARGET as the first argument.
func (a *App) completeTargetArg(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.completeTarget(toComplete)
}

// completeFetchArgs completes `fetch TARGET:PATH LOCALDIR`.
func (a *App) completeFetchArgs(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	switch len(args) {
	case 0:
		return a.completeTargetPath(toComplete)
	case 1:
		return nil, cobra.ShellCompDirectiveFilterDirs
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

// completeCpArgs completes `cp LOCAL TARGET:PATH`.
func (a *App) completeCpArgs(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	switch len(args) {
	case 0:
		return nil, cobra.ShellCompDirectiveDefault
	case 1:
		return a.completeTargetPath(toComplete)
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

// completeScriptArgs completes `script TARGET FILE [ARG...]`: the target,
// then local files.
func (a *App) completeScriptArgs(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) == 0 {
		return a.completeTarget(toComplete)
	}
	return nil, cobra.ShellCompDirectiveDefault
}

// completeTargetPath completes the TARGET of TARGET:PATH, each candidate
// followed by the ':' it needs and no space. The minions' paths are not
// known here: after ':/' nothing is offered.
func (a *App) completeTargetPath(toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if strings.Contains(toComplete, ":/") {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	cands, dir := a.completeTarget(toComplete)
	for i, c := range cands {
		value, desc, _ := strings.Cut(c, "\t")
		cands[i] = cobra.CompletionWithDesc(value+":", desc)
	}
	return cands, dir | cobra.ShellCompDirectiveNoSpace
}

// completeModulesArgs completes `modules TARGET [MODULE]`.
func (a *App) completeModulesArgs(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	switch len(args) {
	case 0:
		return a.completeTarget(toComplete)
	case 1:
		var out []cobra.Completion
		for _, m := range builtin.Registry().DescribeAll() {
			if strings.HasPrefix(m.Name, toComplete) {
				out = append(out, cobra.CompletionWithDesc(m.Name, firstSentence(m.Doc)))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

// completeMinionArgs completes minion names.
func (a *App) completeMinionArgs(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	inv, err := a.completionStore().Inventory()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, m := range inv.Minions {
		if strings.HasPrefix(m.Name, toComplete) {
			out = append(out, m.Name)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeGroupArgs completes `group add|remove GROUP MINION...`.
func (a *App) completeGroupArgs(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return a.completeMinionArgs(cmd, args, toComplete)
	}
	inv, err := a.completionStore().Inventory()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for g := range inv.Groups {
		if strings.HasPrefix(g, toComplete) {
			out = append(out, g)
		}
	}
	sort.Strings(out)
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeTarget completes a target expression: minion names and
// @groups, for the term after the last comma (and a leading !).
func (a *App) completeTarget(toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	done, term := "", toComplete
	if i := strings.LastIndex(toComplete, ","); i >= 0 {
		done, term = toComplete[:i+1], toComplete[i+1:]
	}
	if strings.HasPrefix(term, "!") {
		done, term = done+"!", term[1:]
	}
	inv, err := a.completionStore().Inventory()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	groups := make([]string, 0, len(inv.Groups))
	for g := range inv.Groups {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		if strings.HasPrefix("@"+g, term) {
			out = append(out, cobra.CompletionWithDesc(done+"@"+g, fmt.Sprintf("group of %d", len(inv.Groups[g]))))
		}
	}
	for _, m := range inv.Minions {
		if strings.HasPrefix(m.Name, term) {
			out = append(out, cobra.CompletionWithDesc(done+m.Name, m.Addr))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeCall completes `call TARGET MODULE.METHOD [key=value...]`.
func (a *App) completeCall(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	switch len(args) {
	case 0:
		return a.completeTarget(toComplete)
	case 1:
		return completeMethod(toComplete, a.cachedPlugins()), cobra.ShellCompDirectiveNoFileComp
	}
	return completeParams(args[1], args[2:], toComplete, a.cachedPlugins), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
}

// cachedPlugins returns the plugins the minions described to 'overlord
// modules' (cached in overlord.db), one description per module name;
// nothing if the store is busy or has none.
func (a *App) cachedPlugins() []modules.ModuleInfo {
	st := a.completionStore()
	ms, err := st.Minions()
	if err != nil {
		return nil
	}
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	descs, err := st.CachedModules(names)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []modules.ModuleInfo
	for _, n := range names {
		for _, m := range descs[n].Modules {
			if !seen[m.Name] {
				seen[m.Name] = true
				out = append(out, m)
			}
		}
	}
	return out
}

// completeMethod offers the MODULE.METHODs of the built-in modules and of
// the plugins given.
func completeMethod(toComplete string, plugins []modules.ModuleInfo) []cobra.Completion {
	var out []cobra.Completion
	for _, m := range append(builtin.Registry().DescribeAll(), plugins...) {
		for _, meth := range m.Methods {
			name := m.Name + "." + meth.Name
			if strings.HasPrefix(name, toComplete) {
				out = append(out, cobra.CompletionWithDesc(name, firstSentence(meth.Doc)))
			}
		}
	}
	return out
}

// completeParams offers a method's parameters as key=, leaving out those
// already given: a built-in's, else a cached plugin's (plugins is called
// only then).
func completeParams(moduleMethod string, given []string, toComplete string, plugins func() []modules.ModuleInfo) []cobra.Completion {
	if strings.Contains(toComplete, "=") {
		return nil // a value: nothing to offer
	}
	mod, meth, ok := strings.Cut(moduleMethod, ".")
	if !ok {
		return nil
	}
	var params []modules.Param
	if m, err := builtin.Registry().Lookup(mod, meth); err == nil {
		params = m.Params
	} else {
		for _, pm := range plugins() {
			for _, mi := range pm.Methods {
				if pm.Name == mod && mi.Name == meth {
					params = mi.Params
				}
			}
		}
	}
	have := map[string]bool{}
	for _, w := range given {
		if k, _, ok := strings.Cut(w, "="); ok {
			have[k] = true
		}
	}
	var out []cobra.Completion
	for _, p := range params {
		if have[p.Name] || !strings.HasPrefix(p.Name+"=", toComplete) {
			continue
		}
		out = append(out, cobra.CompletionWithDesc(p.Name+"=", fmt.Sprintf("%s: %s", p.Type, firstSentence(p.Doc))))
	}
	return out
}

// completeJobArg completes a job ID, newest first, each with what it was.
func (a *App) completeJobArg(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	// Keep the shell's order: newest first.
	const dir = cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
	if len(args) > 0 {
		return nil, dir
	}
	recs, err := a.completionStore().ListJobs(jobs.ListOptions{Limit: completionJobs})
	if err != nil {
		return nil, dir
	}
	var out []cobra.Completion
	for _, r := range recs {
		if !strings.HasPrefix(r.ID, strings.ToLower(toComplete)) {
			continue
		}
		desc := fmt.Sprintf("%s.%s %s, %s, %s", r.Module, r.Method, r.Target, strings.ToLower(string(r.State)), r.CreatedAt.Local().Format(time.DateTime))
		out = append(out, cobra.CompletionWithDesc(r.ID, desc))
	}
	return out, dir
}

// firstSentence returns a doc's first sentence, for a completion's
// description.
func firstSentence(doc string) string {
	doc = strings.Join(strings.Fields(doc), " ")
	if i := strings.Index(doc, ". "); i >= 0 {
		doc = doc[:i]
	}
	doc = strings.TrimSuffix(doc, ".")
	if len(doc) > 60 {
		doc = doc[:57] + "..."
	}
	return doc
}
