package config

import "strings"

// closest returns the known name a mistyped key most likely meant, or "" if
// none is close. Close means a small edit distance (typos, `_` for `-`) or
// sharing every word of the key ("https-port" → "https-listen-port"). A
// tie ("cidr": cluster or service?) suggests nothing rather than guess.
func closest(key string, names []string) string {
	norm := strings.ToLower(strings.ReplaceAll(key, "_", "-"))
	best, bestDist, tie := "", -1, false
	for _, n := range names {
		d := editDistance(norm, n)
		if d > max(2, len(n)/3) && !hasAllWords(n, norm) {
			continue
		}
		switch {
		case bestDist < 0 || d < bestDist:
			best, bestDist, tie = n, d, false
		case d == bestDist:
			tie = true
		}
	}
	if tie {
		return ""
	}
	return best
}

func hasAllWords(name, key string) bool {
	words := strings.Split(name, "-")
	for _, w := range strings.Split(key, "-") {
		found := false
		for _, x := range words {
			if w == x {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
