package profiles

import (
	"math"
	"regexp"
	"strconv"
	"strings"
)

// quantTable maps a quantisation label, upper-cased with '-' and ' ' turned
// into '_', to its normalised form.
var quantTable = map[string]string{
	"Q2_K":      "q2k",
	"Q3_K_S":    "q3ks",
	"Q3_K_M":    "q3km",
	"Q3_K_L":    "q3kl",
	"Q4_0":      "q4",
	"Q4_1":      "q4_1",
	"Q4_K_S":    "q4ks",
	"Q4_K_M":    "q4km",
	"Q4_K_XL":   "q4kxl",
	"Q5_0":      "q5",
	"Q5_1":      "q5_1",
	"Q5_K_S":    "q5ks",
	"Q5_K_M":    "q5km",
	"Q6_K":      "q6k",
	"Q8_0":      "q8",
	"F16":       "f16",
	"FP16":      "f16",
	"F32":       "f32",
	"FP32":      "f32",
	"BF16":      "bf16",
	"GPTQ_4BIT": "gptq4",
	"AWQ_4BIT":  "awq4",
	"INT4":      "int4",
	"INT8":      "int8",
	"MXFP4":     "mxfp4",
	"NVFP4":     "nvfp4",
}

// quantDisplay is the reverse of quantTable, preferring llama.cpp's spelling
// (F16 rather than FP16).
var quantDisplay = func() map[string]string {
	m := make(map[string]string, len(quantTable))
	for label, norm := range quantTable {
		if cur, ok := m[norm]; !ok || len(label) < len(cur) {
			m[norm] = label
		}
	}
	return m
}()

var (
	reQuantKX   = regexp.MustCompile(`^Q(\d)_K_([A-Z]+)$`)
	reQuantK    = regexp.MustCompile(`^Q(\d)_K$`)
	reQuant0    = regexp.MustCompile(`^Q(\d)_0$`)
	reQuantN    = regexp.MustCompile(`^Q(\d)_([1-9])$`)
	reQuantIQ   = regexp.MustCompile(`^IQ(\d)_([A-Z]+)$`)
	reQuantFP   = regexp.MustCompile(`^FP(\d+)$`)
	reQuantBits = regexp.MustCompile(`^(GPTQ|AWQ)_?(\d+)_?BITS?$`)

	reNormKX = regexp.MustCompile(`^q(\d)k([a-z]+)$`)
	reNormK  = regexp.MustCompile(`^q(\d)k$`)
	reNorm0  = regexp.MustCompile(`^q(\d)$`)
	reNormN  = regexp.MustCompile(`^q(\d)_([1-9])$`)
	reNormIQ = regexp.MustCompile(`^iq(\d)([a-z]+)$`)
	reNormF  = regexp.MustCompile(`^f(\d+)$`)
)

// NormalizeQuantization gives a quantisation label a comparable form:
// "Q4_K_M" → "q4km", "Q8_0" → "q8", "Q4_1" → "q4_1", "FP16" → "f16",
// "IQ4_XS" → "iq4xs", "GPTQ_4BIT" → "gptq4"; anything else is lower-cased.
// An empty label or Ollama's "unknown" gives "".
func NormalizeQuantization(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "unknown") {
		return ""
	}
	key := strings.ToUpper(strings.NewReplacer("-", "_", " ", "_").Replace(s))
	if n, ok := quantTable[key]; ok {
		return n
	}
	if m := reQuantKX.FindStringSubmatch(key); m != nil {
		return "q" + m[1] + "k" + strings.ToLower(m[2])
	}
	if m := reQuantK.FindStringSubmatch(key); m != nil {
		return "q" + m[1] + "k"
	}
	if m := reQuant0.FindStringSubmatch(key); m != nil {
		return "q" + m[1]
	}
	if m := reQuantN.FindStringSubmatch(key); m != nil {
		return "q" + m[1] + "_" + m[2]
	}
	if m := reQuantIQ.FindStringSubmatch(key); m != nil {
		return "iq" + m[1] + strings.ToLower(m[2])
	}
	if m := reQuantFP.FindStringSubmatch(key); m != nil {
		return "f" + m[1]
	}
	if m := reQuantBits.FindStringSubmatch(key); m != nil {
		return strings.ToLower(m[1]) + m[2]
	}
	return strings.ToLower(s)
}

// DenormalizeQuantization turns a normalised label back into the spelling
// Ollama and llama.cpp use: "q4km" → "Q4_K_M", "q8" → "Q8_0", "q4" → "Q4_0",
// "f16" → "F16", "iq4xs" → "IQ4_XS". A label it does not recognise is returned
// unchanged.
func DenormalizeQuantization(s string) string {
	n := strings.ToLower(strings.TrimSpace(s))
	if d, ok := quantDisplay[n]; ok {
		return d
	}
	if m := reNormKX.FindStringSubmatch(n); m != nil {
		return "Q" + m[1] + "_K_" + strings.ToUpper(m[2])
	}
	if m := reNormK.FindStringSubmatch(n); m != nil {
		return "Q" + m[1] + "_K"
	}
	if m := reNorm0.FindStringSubmatch(n); m != nil {
		return "Q" + m[1] + "_0"
	}
	if m := reNormN.FindStringSubmatch(n); m != nil {
		return "Q" + m[1] + "_" + m[2]
	}
	if m := reNormIQ.FindStringSubmatch(n); m != nil {
		return "IQ" + m[1] + "_" + strings.ToUpper(m[2])
	}
	if m := reNormF.FindStringSubmatch(n); m != nil {
		return "F" + m[1]
	}
	return s
}

// reParamSize matches "7.6B", "12.00M", "189K", "500 m", "70b" and bare
// counts such as "188736".
var reParamSize = regexp.MustCompile(`^(\d+(?:\.\d+)?)\s*([kmbt]?)$`)

// reParamMoE matches mixture-of-experts sizes such as "8x7B".
var reParamMoE = regexp.MustCompile(`^(\d+)\s*x\s*(\d+(?:\.\d+)?)\s*([kmbt]?)$`)

var paramScale = map[string]float64{"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}

// NormalizeParameterSize gives a parameter size a comparable form: "7.6B" →
// "7.6b", "12.00M" → "12m", "189K" → "189k", and a bare count such as
// "7615616512" → "7.6b". Other text (e.g. "8x7B") is lower-cased; "" and
// "unknown" give "".
func NormalizeParameterSize(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || s == "unknown" {
		return ""
	}
	m := reParamSize.FindStringSubmatch(s)
	if m == nil {
		return s
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return s
	}
	if m[2] == "" {
		return strings.ToLower(formatParameterCount(int64(math.Min(v, math.MaxInt64))))
	}
	return strconv.FormatFloat(v, 'f', -1, 64) + m[2]
}

// ParameterCount returns the number of parameters a size label stands for:
// "7.6B" → 7_600_000_000, "500M" → 500_000_000, "8x7B" → 56_000_000_000. It
// returns 0 for a label it cannot read.
func ParameterCount(s string) int64 {
	s = strings.ToLower(strings.TrimSpace(s))
	mult := 1.0
	if m := reParamMoE.FindStringSubmatch(s); m != nil {
		experts, _ := strconv.ParseFloat(m[1], 64)
		mult = experts
		s = m[2] + m[3]
	}
	m := reParamSize.FindStringSubmatch(s)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0
	}
	n := math.Round(v * paramScale[m[2]] * mult)
	if n >= math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(n)
}

// formatParameterCount writes a parameter count the way Ollama labels sizes:
// "189K", "12M", "7.6B". It returns "" for n <= 0.
func formatParameterCount(n int64) string {
	if n <= 0 {
		return ""
	}
	units := []struct {
		scale float64
		unit  string
		prec  int
	}{{1e3, "K", 0}, {1e6, "M", 1}, {1e9, "B", 1}, {1e12, "T", 1}}
	f := float64(n)
	i := -1
	for j, u := range units {
		if f >= u.scale {
			i = j
		}
	}
	if i < 0 {
		return strconv.FormatInt(n, 10)
	}
	for {
		u := units[i]
		num := strconv.FormatFloat(f/u.scale, 'f', u.prec, 64)
		// 999_999 rounds to "1000K": say "1M" instead.
		if v, _ := strconv.ParseFloat(num, 64); v >= 1000 && i+1 < len(units) {
			i++
			continue
		}
		return strings.TrimSuffix(num, ".0") + u.unit
	}
}
