package profiles

import "testing"

func TestNormalizeQuantization(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Q4_K_M", "q4km"},
		{"q4_k_m", "q4km"},
		{"Q4-K-M", "q4km"},
		{"Q4_K_S", "q4ks"},
		{"Q3_K_L", "q3kl"},
		{"Q3_K_M", "q3km"},
		{"Q3_K_S", "q3ks"},
		{"Q5_K_M", "q5km"},
		{"Q5_K_S", "q5ks"},
		{"Q6_K", "q6k"},
		{"Q2_K", "q2k"},
		{"Q4_0", "q4"},
		{"Q4_1", "q4_1"},
		{"Q5_0", "q5"},
		{"Q5_1", "q5_1"},
		{"Q8_0", "q8"},
		{"F16", "f16"},
		{"FP16", "f16"},
		{"F32", "f32"},
		{"FP32", "f32"},
		{"BF16", "bf16"},
		{"GPTQ_4BIT", "gptq4"},
		{"AWQ_4BIT", "awq4"},
		{"INT8", "int8"},
		{"INT4", "int4"},
		{"Q4_K_XL", "q4kxl"},
		{"MXFP4", "mxfp4"},
		{"NVFP4", "nvfp4"},
		// fallbacks
		{"Q2_K_S", "q2ks"},
		{"Q6_0", "q6"},
		{"IQ4_XS", "iq4xs"},
		{"IQ2_XXS", "iq2xxs"},
		{"FP8", "f8"},
		{"GPTQ-8bit", "gptq8"},
		{"4bit", "4bit"},
		{" Q8_0 ", "q8"},
		{"unknown", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := NormalizeQuantization(tt.in); got != tt.want {
			t.Errorf("NormalizeQuantization(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDenormalizeQuantization(t *testing.T) {
	tests := []struct{ in, want string }{
		{"q4km", "Q4_K_M"},
		{"q8", "Q8_0"},
		{"q4", "Q4_0"},
		{"q4_1", "Q4_1"},
		{"q6k", "Q6_K"},
		{"f16", "F16"},
		{"f32", "F32"},
		{"bf16", "BF16"},
		{"q4kxl", "Q4_K_XL"},
		{"iq4xs", "IQ4_XS"},
		{"q2ks", "Q2_K_S"},
		{"gptq4", "GPTQ_4BIT"},
		{"mxfp4", "MXFP4"},
		{"4bit", "4bit"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := DenormalizeQuantization(tt.in); got != tt.want {
			t.Errorf("DenormalizeQuantization(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// Round trip over the table.
	for label, norm := range quantTable {
		if got := NormalizeQuantization(DenormalizeQuantization(norm)); got != norm {
			t.Errorf("round trip of %q (from %q) gave %q", norm, label, got)
		}
	}
}

func TestNormalizeParameterSize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"7.6B", "7.6b"},
		{"7B", "7b"},
		{"7b", "7b"},
		{"14.7B", "14.7b"},
		{"500M", "500m"},
		{"12.00M", "12m"},
		{"7.60B", "7.6b"},
		{"189K", "189k"},
		{"1.5T", "1.5t"},
		{" 70 B ", "70b"},
		{"7615616512", "7.6b"},
		{"188736", "189k"},
		{"999", "999"},
		{"8x7B", "8x7b"},
		{"unknown", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := NormalizeParameterSize(tt.in); got != tt.want {
			t.Errorf("NormalizeParameterSize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParameterCount(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"7.6B", 7_600_000_000},
		{"500M", 500_000_000},
		{"189K", 189_000},
		{"12.00M", 12_000_000},
		{"8x7B", 56_000_000_000},
		{"188736", 188736},
		{"1e400B", 0},
		{"99999999999999999999T", 1<<63 - 1},
		{"big", 0},
		{"", 0},
	}
	for _, tt := range tests {
		if got := ParameterCount(tt.in); got != tt.want {
			t.Errorf("ParameterCount(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestFormatParameterCount(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, ""},
		{-5, ""},
		{999, "999"},
		{188736, "189K"},
		{999_999, "1M"},
		{12_004_352, "12M"},
		{7_615_616_512, "7.6B"},
		{999_960_000, "1B"},
		{1_500_000_000_000, "1.5T"},
	}
	for _, tt := range tests {
		if got := formatParameterCount(tt.in); got != tt.want {
			t.Errorf("formatParameterCount(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
