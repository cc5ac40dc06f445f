package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Row is one line of the side-by-side table: the median over every round of each side.
type Row struct {
	Case, Title, Unit string
	N                 int
	ClientGo, Ours    float64 // NaN-free: Has* say whether a side measured the case
	HasClientGo       bool
	HasOurs           bool
	Rounds            [2]int // results behind each median: client-go, ours
}

// Ratio is ours / client-go: below 1, ours is faster (or smaller).
func (r Row) Ratio() (float64, bool) {
	if !r.HasClientGo || !r.HasOurs || r.ClientGo == 0 {
		return 0, false
	}
	return r.Ours / r.ClientGo, true
}

// caseTitles are the table's cases in order, with what each measures.
var caseTitles = []struct{ name, title string }{
	{"get_by_key", "GetByKey"},
	{"update_same", "Update, index values unchanged"},
	{"update_move", "Update, node moves"},
	{"add_delete", "Delete + Add of one object"},
	{"replace", "Replace(all), per object"},
	{"list", "List, per object"},
	{"by_index_namespace", "ByIndex(namespace), per object"},
	{"by_index_node", "ByIndex(node), per object"},
	{"index_values_namespace", "ListIndexFuncValues(namespace)"},
	{"index_values_node", "ListIndexFuncValues(node)"},
	{"reader_get_idle", "GetByKey reader, no writer"},
	{"reader_get_busy", "GetByKey reader, saturating writer"},
	{"memory_replace", "memory beyond the objects, Replace(all)"},
	{"memory_adds", "memory beyond the objects, one Add each"},
	{"memory_objects", "the objects themselves (not in the rows above)"},
	{"informer_initial_sync", "informer: initial sync"},
	{"informer_watch_event", "informer: watch event, all cached, one handler"},
}

// readResults reads every JSON line of the files.
func readResults(paths []string) ([]Result, error) {
	var out []Result
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		rs, err := readResultsFrom(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

// readResultsFrom reads JSON lines, one result each.
func readResultsFrom(r io.Reader) ([]Result, error) {
	var out []Result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var res Result
		if err := json.Unmarshal([]byte(text), &res); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

// Table builds the rows from both sides' results, and says what does not add up (a case one
// side lacks, workloads that differ).
func Table(results []Result) ([]Row, []string) {
	type key struct {
		c string
		n int
	}
	values := map[key]map[string][]float64{}
	units := map[key]string{}
	prints := map[int]map[string]string{}
	var warnings []string
	for _, r := range results {
		if r.Side != "client-go" && r.Side != "ours" {
			warnings = append(warnings, fmt.Sprintf("result of an unknown side %q ignored", r.Side))
			continue
		}
		if r.Case == "workload" {
			if prints[r.N] == nil {
				prints[r.N] = map[string]string{}
			}
			if old, ok := prints[r.N][r.Side]; ok && old != r.Fingerprint {
				warnings = append(warnings, fmt.Sprintf("%s built two workloads of %d objects", r.Side, r.N))
			}
			prints[r.N][r.Side] = r.Fingerprint
			continue
		}
		k := key{r.Case, r.N}
		if values[k] == nil {
			values[k] = map[string][]float64{}
		}
		values[k][r.Side] = append(values[k][r.Side], r.Value)
		if u, ok := units[k]; ok && u != r.Unit {
			warnings = append(warnings, fmt.Sprintf("%s at %d: units %q and %q", r.Case, r.N, u, r.Unit))
		}
		units[k] = r.Unit
	}
	ns := make([]int, 0, len(prints))
	for n := range prints {
		ns = append(ns, n)
	}
	sort.Ints(ns)
	for _, n := range ns {
		p := prints[n]
		if p["client-go"] != p["ours"] {
			warnings = append(warnings, fmt.Sprintf("the workloads of %d objects differ: client-go %q, ours %q", n, p["client-go"], p["ours"]))
		}
	}
	order := map[string]int{}
	for i, c := range caseTitles {
		order[c.name] = i
	}
	keys := make([]key, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		oi, iok := order[keys[i].c]
		oj, jok := order[keys[j].c]
		if iok != jok {
			return iok
		}
		if oi != oj || keys[i].c != keys[j].c {
			if iok {
				return oi < oj
			}
			return keys[i].c < keys[j].c
		}
		return keys[i].n < keys[j].n
	})
	rows := make([]Row, 0, len(keys))
	for _, k := range keys {
		title := k.c
		if i, ok := order[k.c]; ok {
			title = caseTitles[i].title
		} else {
			warnings = append(warnings, fmt.Sprintf("unknown case %q", k.c))
		}
		r := Row{Case: k.c, Title: title, Unit: units[k], N: k.n}
		if v := values[k]["client-go"]; len(v) > 0 {
			r.ClientGo, r.HasClientGo, r.Rounds[0] = median(v), true, len(v)
		} else {
			warnings = append(warnings, fmt.Sprintf("%s at %d: no client-go result", k.c, k.n))
		}
		if v := values[k]["ours"]; len(v) > 0 {
			r.Ours, r.HasOurs, r.Rounds[1] = median(v), true, len(v)
		} else {
			warnings = append(warnings, fmt.Sprintf("%s at %d: no result of ours", k.c, k.n))
		}
		rows = append(rows, r)
	}
	for _, c := range caseTitles {
		if _, ok := order[c.name]; ok {
			found := false
			for _, r := range rows {
				found = found || r.Case == c.name
			}
			if !found {
				warnings = append(warnings, fmt.Sprintf("case %s: no result on either side", c.name))
			}
		}
	}
	return rows, warnings
}

func sizeLabel(n int) string {
	if n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

func formatValue(v float64, ok bool) string {
	switch {
	case !ok:
		return "-"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func formatRatio(r Row) string {
	v, ok := r.Ratio()
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.2f×", v)
}

// WriteMarkdown writes the table as markdown, under a heading that says how it was made.
func WriteMarkdown(w io.Writer, rows []Row, warnings []string, header string) error {
	var b strings.Builder
	if header != "" {
		b.WriteString(header)
		b.WriteString("\n\n")
	}
	b.WriteString("| case | N | unit | client-go | ours | ours / client-go |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.Title, sizeLabel(r.N), r.Unit,
			formatValue(r.ClientGo, r.HasClientGo), formatValue(r.Ours, r.HasOurs), formatRatio(r))
	}
	if len(warnings) > 0 {
		b.WriteString("\nWarnings:\n\n")
		for _, w := range warnings {
			fmt.Fprintf(&b, "- %s\n", w)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteCSV writes the table as CSV; missing values are empty.
func WriteCSV(w io.Writer, rows []Row) error {
	var b strings.Builder
	b.WriteString("case,n,unit,client_go,ours,ratio\n")
	num := func(v float64, ok bool) string {
		if !ok {
			return ""
		}
		return fmt.Sprintf("%.4g", v)
	}
	for _, r := range rows {
		ratio, ok := r.Ratio()
		fmt.Fprintf(&b, "%s,%d,%s,%s,%s,%s\n", r.Case, r.N, r.Unit,
			num(r.ClientGo, r.HasClientGo), num(r.Ours, r.HasOurs), num(ratio, ok))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// chartRows are the rows the chart shows: every ratio but the objects' own size.
func chartRows(rows []Row) []Row {
	var out []Row
	for _, r := range rows {
		if _, ok := r.Ratio(); ok && r.Case != "memory_objects" {
			out = append(out, r)
		}
	}
	return out
}

// GnuplotScript is the gnuplot program that draws the ratios of rows as horizontal bars on a
// logarithmic axis, to svg (or to a PNG file, when its name ends in .png); data is the path of
// the data file GnuplotData wrote for the same rows.
func GnuplotScript(svg, data string, rows []Row, title string) string {
	count := len(rows)
	height := 130 + 22*count
	terminal := "svg size 1000,%d dynamic"
	if strings.HasSuffix(svg, ".png") {
		terminal = "pngcairo size 1000,%d"
	}
	// The axis spans whole powers of two around every ratio, with room for the labels.
	lo, hi := 0.5, 2.0
	for _, r := range rows {
		v, _ := r.Ratio()
		for v > 0 && v < lo*3 {
			lo /= 2
		}
		for v > hi/3 {
			hi *= 2
		}
	}
	var tics []string
	for t := lo; t <= hi*1.01; t *= 2 {
		name := fmt.Sprintf("%g", t)
		if t < 1 {
			name = fmt.Sprintf("1/%g", 1/t)
		}
		tics = append(tics, fmt.Sprintf("%q %g", name, t))
	}
	return fmt.Sprintf(`set terminal `+terminal+` font "sans,12" background rgb "white"
set output %q
set title %q
set logscale x 2
set xrange [%g:%g]
set xtics (%s)
set xlabel "ours / client-go (below 1: ours is faster or smaller)"
set yrange [-0.7:%f]
set ytics nomirror
set grid xtics
set key off
set style fill solid 0.8 border -1
set arrow from 1,-0.7 to 1,%f nohead lw 2 lc rgb "black"
plot %q using (sqrt($2)):0:($2 < 1 ? $2 : 1):($2 < 1 ? 1 : $2):($0-0.35):($0+0.35):($2 <= 1 ? 2792847 : 15167313):ytic(1) with boxxyerror lc rgb variable, \
     %q using ($2 * 1.08):0:($2 > 1 ? stringcolumn(3) : "") with labels font "sans,10" left, \
     %q using ($2 / 1.08):0:($2 > 1 ? "" : stringcolumn(3)) with labels font "sans,10" right
`, height, svg, title, lo, hi, strings.Join(tics, ", "), float64(count)-0.3, float64(count)-0.3, data, data, data)
}

// GnuplotData is the chart's data: one line per bar, label, ratio and the ratio as text; the
// first row is drawn at the top.
func GnuplotData(rows []Row) string {
	var b strings.Builder
	for i := len(rows) - 1; i >= 0; i-- {
		r := rows[i]
		ratio, _ := r.Ratio()
		fmt.Fprintf(&b, "%q %g %q\n", r.Title+", "+sizeLabel(r.N), ratio, fmt.Sprintf("%.2f×", ratio))
	}
	return b.String()
}

func reportCmd(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	md := fs.String("out-md", "", "write the markdown table here")
	csv := fs.String("out-csv", "", "write the CSV table here")
	svg := fs.String("plot", "", "draw the chart of the ratios to this SVG (or .png) file (needs gnuplot)")
	header := fs.String("header", "", "markdown put above the table")
	title := fs.String("title", "typed-cache against client-go: ours / client-go", "the chart's title")
	strict := fs.Bool("strict", false, "fail when a case lacks a side or the workloads differ")
	readme := fs.String("readme", "", "replace the table between the client-go-comparison markers of this markdown file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	results, err := readResults(fs.Args())
	if err != nil {
		return err
	}
	if len(results) == 0 {
		return fmt.Errorf("no results in %v", fs.Args())
	}
	rows, warnings := Table(results)
	for _, w := range warnings {
		fmt.Fprintln(os.Stderr, "warning:", w)
	}
	if err := WriteMarkdown(os.Stdout, rows, warnings, ""); err != nil {
		return err
	}
	write := func(path string, f func(io.Writer) error) error {
		if path == "" {
			return nil
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		out, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := f(out); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}
	if err := write(*md, func(w io.Writer) error { return WriteMarkdown(w, rows, warnings, *header) }); err != nil {
		return err
	}
	if err := write(*csv, func(w io.Writer) error { return WriteCSV(w, rows) }); err != nil {
		return err
	}
	if *readme != "" {
		text, err := os.ReadFile(*readme)
		if err != nil {
			return err
		}
		var table strings.Builder
		if err := WriteMarkdown(&table, rows, warnings, *header); err != nil {
			return err
		}
		chart := ""
		if *svg != "" {
			rel, err := filepath.Rel(filepath.Dir(*readme), *svg)
			if err != nil {
				return err
			}
			chart = fmt.Sprintf("![ours / client-go, per case](%s)\n\n", filepath.ToSlash(rel))
		}
		updated, err := ReplaceBlock(string(text), chart+table.String())
		if err != nil {
			return fmt.Errorf("%s: %w", *readme, err)
		}
		if err := os.WriteFile(*readme, []byte(updated), 0o644); err != nil {
			return err
		}
	}
	if *svg != "" {
		bars := chartRows(rows)
		dir, err := os.MkdirTemp("", "client-go-chart")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		data := filepath.Join(dir, "ratios.dat")
		if err := os.WriteFile(data, []byte(GnuplotData(bars)), 0o644); err != nil {
			return err
		}
		script := filepath.Join(dir, "chart.gp")
		if err := os.WriteFile(script, []byte(GnuplotScript(*svg, data, bars, *title)), 0o644); err != nil {
			return err
		}
		cmd := exec.Command("gnuplot", script)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("gnuplot: %w", err)
		}
	}
	if *strict && len(warnings) > 0 {
		return fmt.Errorf("%d warnings", len(warnings))
	}
	return nil
}

// The markers around the generated table in a markdown file.
const (
	blockStart = "<!-- client-go-comparison:start (written by bench/compare) -->"
	blockEnd   = "<!-- client-go-comparison:end -->"
)

// ReplaceBlock replaces what stands between the markers of text with block.
func ReplaceBlock(text, block string) (string, error) {
	start := strings.Index(text, blockStart)
	end := strings.Index(text, blockEnd)
	if start < 0 || end < start {
		return "", fmt.Errorf("no %q ... %q block", blockStart, blockEnd)
	}
	return text[:start+len(blockStart)] + "\n" + block + text[end:], nil
}
