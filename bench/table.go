package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteTable writes the report as an aligned table: one row per target,
// direct and proxy rows of one model next to each other.
func WriteTable(w io.Writer, r Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tTYPE\tMODEL\tVIA\tTTFT P50\tTTFT P95\tTOKENS/S\tERRORS")
	for _, res := range r.Results {
		ep := res.Endpoint
		if ep == "" {
			ep = "(proxy: " + strings.Join(res.ServedBy, ",") + ")"
		}
		errs := fmt.Sprintf("%d/%d", res.Errors, res.Requests)
		if res.Skipped > 0 {
			errs += fmt.Sprintf(" (+%d skipped)", res.Skipped)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ep, res.Type, res.Model, res.Via,
			ms(res.TTFTp50Ms), ms(res.TTFTp95Ms), num(res.TokensPerSecond), errs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, res := range r.Results {
		for _, m := range res.ErrorMessages {
			name := res.Endpoint
			if name == "" {
				name = "proxy"
			}
			fmt.Fprintf(w, "  %s %s: %s\n", name, res.Model, m)
		}
	}
	return nil
}

func ms(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 1, 64) + " ms"
}

func num(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 1, 64)
}
