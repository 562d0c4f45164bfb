package main

// Output: a progress line per run, one table per scenario, and the one-line
// summary of the targets.

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// metricLabels are the row labels of the tables, indexed by metric.
func metricLabels() [numMetrics]string {
	return [numMetrics]string{
		metricRPS:       "requests/s",
		metricTTFBP50:   "TTFB p50 (ms)",
		metricTTFBP99:   "TTFB p99 (ms)",
		metricTotalP50:  "total p50 (ms)",
		metricTotalP99:  "total p99 (ms)",
		metricErrors:    "errors",
		metricTruncated: "truncated",
		metricRSS:       "peak RSS (MiB)",
		metricCPUPerReq: "Caddy CPU/req (µs)",
		metricForeign:   "other load (cores)",
	}
}

// contenderNames are the report names in column order.
func contenderNames() [numContenders]string {
	return [numContenders]string{olla: "olla", sherpa: "sherpa", reverseProxy: "reverse_proxy"}
}

// printProgress writes one line about a finished run, and what went wrong
// in it if anything did.
func printProgress(w io.Writer, sc scenario, round int, c contender, st runStats, out loadOutcome, split []int64, logPath string) {
	fmt.Fprintf(w, "  (%s) round %d %-13s %8s req/s  TTFB p50/p99 %s/%s ms  total p50/p99 %s/%s ms  errors %d  truncated %d  peak RSS %s MiB  CPU %s µs/req  other load %s cores",
		sc.key, round+1, c.name, formatValue(metricRPS, st.rps),
		formatValue(metricTTFBP50, st.value(metricTTFBP50)), formatValue(metricTTFBP99, st.value(metricTTFBP99)),
		formatValue(metricTotalP50, st.value(metricTotalP50)), formatValue(metricTotalP99, st.value(metricTotalP99)),
		st.errors, st.truncated, formatValue(metricRSS, st.value(metricRSS)),
		formatValue(metricCPUPerReq, st.cpuPerReq), formatValue(metricForeign, st.foreignCores))
	if len(split) > 0 {
		var sum int64
		for _, n := range split {
			sum += n
		}
		parts := make([]string, len(split))
		for i, n := range split {
			parts[i] = fmt.Sprintf("%.0f%%", 100*float64(n)/math.Max(1, float64(sum)))
		}
		fmt.Fprintf(w, "  backends %s", strings.Join(parts, "/"))
	}
	fmt.Fprintln(w)
	for _, s := range out.samples {
		fmt.Fprintf(w, "      e.g. %s\n", s)
	}
	if n, first := logErrorLines(logPath); n > 0 {
		fmt.Fprintf(w, "      %d error-level lines in %s; first: %s\n", n, logPath, clip(first, 400))
	}
}

// printTable writes the table of one scenario.
func printTable(w io.Writer, res scenarioResult, o options) {
	if res.sc.reload {
		printReloadTable(w, res)
		return
	}
	if res.sc.hostile {
		printHostileTable(w, res)
		return
	}
	fmt.Fprintf(w, "(%s) %s: %d round(s) of %s measured after %s warm-up\n",
		res.sc.key, res.sc.title, o.rounds, o.duration, o.warmup)
	fmt.Fprintf(w, "    each cell: median over rounds, range (min–max), ratio of the median to reverse_proxy's\n")
	names := contenderNames()
	header := []string{"metric"}
	for c := range numContenders {
		header = append(header, names[c], "range")
		if c != reverseProxy {
			header = append(header, "×rp")
		}
	}
	rows := [][]string{header}
	labels := metricLabels()
	for m := range numMetrics {
		row := []string{labels[m]}
		base := spreadOf(res.runs[reverseProxy], m)
		for c := range numContenders {
			s := spreadOf(res.runs[c], m)
			if s.n == 0 {
				row = append(row, "–", "–")
			} else {
				row = append(row, formatValue(m, s.median), formatValue(m, s.min)+"–"+formatValue(m, s.max))
			}
			if c != reverseProxy {
				if m == metricForeign {
					row = append(row, "")
				} else {
					row = append(row, ratio(s, base))
				}
			}
		}
		rows = append(rows, row)
	}
	writeAligned(w, rows, "    ")
}

// ratio formats a's median over b's.
func ratio(a, b spread) string {
	if a.n == 0 || b.n == 0 || b.median == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a.median/b.median)
}

// formatValue prints a metric value with a precision that suits its size.
func formatValue(m metric, v float64) string {
	switch m {
	case metricRPS:
		if v >= 100 {
			return fmt.Sprintf("%.0f", v)
		}
		return fmt.Sprintf("%.1f", v)
	case metricErrors, metricTruncated:
		if v == math.Trunc(v) {
			return fmt.Sprintf("%.0f", v)
		}
		return fmt.Sprintf("%.1f", v)
	case metricRSS, metricCPUPerReq:
		if v >= 1000 {
			return fmt.Sprintf("%.0f", v)
		}
		return fmt.Sprintf("%.1f", v)
	case metricForeign:
		return fmt.Sprintf("%.2f", v)
	}
	switch { // milliseconds
	case v < 1:
		return fmt.Sprintf("%.3f", v)
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// writeAligned prints rows as columns: the first left-aligned, the rest
// right-aligned, two spaces apart.
func writeAligned(w io.Writer, rows [][]string, indent string) {
	var widths []int
	for _, r := range rows {
		for i, cell := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		b.WriteString(indent)
		for i, cell := range r {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell))
			if i == 0 {
				b.WriteString(cell + pad)
			} else {
				b.WriteString("  " + pad + cell)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// targetsLine is the one-line summary of the performance targets. It only
// reports: a miss does not change the exit status.
func targetsLine(results []scenarioResult) string {
	find := func(key string) *scenarioResult {
		for i := range results {
			if results[i].sc.key == key && len(results[i].runs[reverseProxy]) > 0 {
				return &results[i]
			}
		}
		return nil
	}
	var parts []string
	add := func(label string, res *scenarioResult, check func(r *scenarioResult) (bool, string)) {
		if res == nil {
			parts = append(parts, label+": n/a")
			return
		}
		pass, detail := check(res)
		verdict := "MISS"
		if pass {
			verdict = "PASS"
		}
		parts = append(parts, fmt.Sprintf("%s: %s (%s)", label, verdict, detail))
	}
	rpsAtLeast := func(c int, factor float64) func(r *scenarioResult) (bool, string) {
		return func(r *scenarioResult) (bool, string) {
			a, b := spreadOf(r.runs[c], metricRPS), spreadOf(r.runs[reverseProxy], metricRPS)
			if a.n == 0 || b.median == 0 {
				return false, "no data"
			}
			return a.median >= factor*b.median, ratio(a, b)
		}
	}
	a, b, c := find("a"), find("b"), find("c")

	add("(a) olla rps ≥0.95×rp", a, rpsAtLeast(olla, 0.95))
	add("(b) olla rps ≥0.95×rp", b, rpsAtLeast(olla, 0.95))
	add("(c) olla TTFB p99 ≤ rp+25ms", c, func(r *scenarioResult) (bool, string) {
		x, y := spreadOf(r.runs[olla], metricTTFBP99), spreadOf(r.runs[reverseProxy], metricTTFBP99)
		if x.n == 0 {
			return false, "no data"
		}
		return x.median <= y.median+25, fmt.Sprintf("%s vs %s ms", formatValue(metricTTFBP99, x.median), formatValue(metricTTFBP99, y.median))
	})
	add("(c) olla zero errors+truncated", c, func(r *scenarioResult) (bool, string) {
		if len(r.runs[olla]) == 0 {
			return false, "no data"
		}
		e, t := sumOf(r.runs[olla], metricErrors), sumOf(r.runs[olla], metricTruncated)
		return e == 0 && t == 0, fmt.Sprintf("%.0f errors, %.0f truncated over %d rounds", e, t, len(r.runs[olla]))
	})
	add("(c) olla peak RSS ≤1.0×rp", c, func(r *scenarioResult) (bool, string) {
		x, y := spreadOf(r.runs[olla], metricRSS), spreadOf(r.runs[reverseProxy], metricRSS)
		if x.n == 0 || y.median == 0 {
			return false, "no data"
		}
		return x.median <= y.median, ratio(x, y)
	})
	add("(a) sherpa rps ≥0.90×rp", a, rpsAtLeast(sherpa, 0.90))
	add("(b) sherpa rps ≥0.90×rp", b, rpsAtLeast(sherpa, 0.90))
	for _, ci := range []int{olla, sherpa} {
		parts = append(parts, hostileTarget(results, ci))
	}
	for _, ci := range []int{olla, sherpa} {
		parts = append(parts, reloadTarget(results, ci))
	}
	return "targets: " + strings.Join(parts, "; ")
}

// clip shortens s to at most n bytes for a one-line message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// printReloadProgress writes one line about a finished run of scenario (r),
// and what went wrong in it if anything did.
func printReloadProgress(w io.Writer, sc scenario, c contender, st *reloadStats, logPath string) {
	inFlight := "in flight not reported"
	if st.inFlight >= 0 {
		inFlight = fmt.Sprintf("%d in flight at the first reload", st.inFlight)
	}
	fmt.Fprintf(w, "  (%s) %-13s %d streams: %d completed, %d failed, %d truncated; %d reloads, %d errors, p50/max %s/%s ms; %s, %d ended before the last; health unchanged: %s; last stream ended after %.1f s\n",
		sc.key, c.name, st.streams, st.completed, st.failed, st.truncated, st.reloads, st.reloadErrors,
		formatValue(metricTotalP50, ms(st.reloadP50)), formatValue(metricTotalP50, ms(st.reloadMax)),
		inFlight, st.endedBeforeLast, healthVerdict(st), st.elapsed.Seconds())
	for _, s := range st.samples {
		fmt.Fprintf(w, "      e.g. %s\n", s)
	}
	if st.reloadSample != "" {
		fmt.Fprintf(w, "      e.g. %s\n", st.reloadSample)
	}
	if st.healthDetail != "" {
		fmt.Fprintf(w, "      health: %s\n", st.healthDetail)
	}
	if n, first := logErrorLines(logPath); n > 0 {
		fmt.Fprintf(w, "      %d error-level lines in %s; first: %s\n", n, logPath, clip(first, 400))
	}
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// healthVerdict is the "health state unchanged" cell: yes, no, or n/a where
// the contender does not report endpoint health (or it could not be read).
func healthVerdict(st *reloadStats) string {
	switch {
	case !st.health:
		return "n/a"
	case st.healthSame:
		return "yes"
	case st.healthDetail != "" && !strings.Contains(st.healthDetail, "→"):
		return "unknown"
	}
	return "no"
}

// printReloadTable writes the table of scenario (r) and its PASS/MISS line.
func printReloadTable(w io.Writer, res scenarioResult) {
	fmt.Fprintf(w, "(%s) %s: one run per contender\n", res.sc.key, res.sc.title)
	names := contenderNames()
	order := reloadContenders()
	header := []string{"metric"}
	for _, c := range order {
		header = append(header, names[c])
	}
	type rowFn func(st *reloadStats) string
	rowDefs := []struct {
		label string
		cell  rowFn
	}{
		{"streams completed", func(st *reloadStats) string { return fmt.Sprintf("%d/%d", st.completed, st.streams) }},
		{"failed (error or non-200)", func(st *reloadStats) string { return fmt.Sprint(st.failed) }},
		{"truncated (no \"done\":true)", func(st *reloadStats) string { return fmt.Sprint(st.truncated) }},
		{"reloads", func(st *reloadStats) string { return fmt.Sprint(st.reloads) }},
		{"reload errors", func(st *reloadStats) string { return fmt.Sprint(st.reloadErrors) }},
		{"reload time p50/max (ms)", func(st *reloadStats) string {
			return formatValue(metricTotalP50, ms(st.reloadP50)) + "/" + formatValue(metricTotalP50, ms(st.reloadMax))
		}},
		{"in flight at 1st reload", func(st *reloadStats) string {
			if st.inFlight < 0 {
				return "–"
			}
			return fmt.Sprint(st.inFlight)
		}},
		{"ended before last reload", func(st *reloadStats) string { return fmt.Sprint(st.endedBeforeLast) }},
		{"health state unchanged", healthVerdict},
		{"last stream ended (s)", func(st *reloadStats) string { return fmt.Sprintf("%.1f", st.elapsed.Seconds()) }},
	}
	rows := [][]string{header}
	for _, d := range rowDefs {
		row := []string{d.label}
		for _, c := range order {
			if st := res.reload[c]; st != nil {
				row = append(row, d.cell(st))
			} else {
				row = append(row, "–")
			}
		}
		rows = append(rows, row)
	}
	writeAligned(w, rows, "    ")
	for _, c := range order {
		st := res.reload[c]
		if st == nil || !st.health {
			continue
		}
		switch {
		case st.healthBefore != "" && st.healthDetail != "":
			fmt.Fprintf(w, "    %s endpoints before the reloads: %s; changed: %s\n", names[c], st.healthBefore, st.healthDetail)
		case st.healthBefore != "":
			fmt.Fprintf(w, "    %s endpoints before the reloads: %s\n", names[c], st.healthBefore)
		case st.healthDetail != "":
			fmt.Fprintf(w, "    %s endpoints: %s\n", names[c], st.healthDetail)
		}
	}
	var parts []string
	for _, c := range order {
		st := res.reload[c]
		if st == nil {
			continue
		}
		verdict := "MISS"
		if st.passed() {
			verdict = "PASS"
		}
		label := names[c]
		if c == reverseProxy {
			label += " (reference)"
		}
		parts = append(parts, fmt.Sprintf("%s %s", label, verdict))
	}
	if len(parts) == 0 {
		parts = append(parts, "no runs")
	}
	fmt.Fprintf(w, "    (r) zero failed, zero truncated, every reload accepted, health state unchanged: %s\n", strings.Join(parts, "; "))
}

// reloadTarget is the targets-line entry of scenario (r) for contender c.
func reloadTarget(results []scenarioResult, c int) string {
	label := fmt.Sprintf("(r) %s reload under load", contenderNames()[c])
	for i := range results {
		st := results[i].reload[c]
		if !results[i].sc.reload || st == nil {
			continue
		}
		verdict := "MISS"
		if st.passed() {
			verdict = "PASS"
		}
		return fmt.Sprintf("%s: %s (%d failed, %d truncated, %d/%d reload errors, health unchanged %s)",
			label, verdict, st.failed, st.truncated, st.reloadErrors, st.reloads, healthVerdict(st))
	}
	return label + ": n/a"
}
