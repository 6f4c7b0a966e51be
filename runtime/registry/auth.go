package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// challenge is one WWW-Authenticate challenge of a registry's 401.
type challenge struct {
	scheme string            // lower case: "basic" or "bearer"
	params map[string]string // realm, service, scope, ...
}

// parseChallenges parses WWW-Authenticate header values (RFC 7235):
// `Bearer realm="https://auth.example.com/token",service="reg",scope="repository:a/b:pull"`.
func parseChallenges(values []string) []challenge {
	var out []challenge
	for _, v := range values {
		s := strings.TrimSpace(v)
		for s != "" {
			var scheme string
			scheme, s = token(s)
			if scheme == "" {
				break
			}
			c := challenge{scheme: strings.ToLower(scheme), params: map[string]string{}}
			s = strings.TrimLeft(s, " ")
			for s != "" {
				key, rest := token(s)
				rest = strings.TrimLeft(rest, " ")
				if key == "" || !strings.HasPrefix(rest, "=") {
					break // the next challenge's scheme
				}
				rest = strings.TrimLeft(rest[1:], " ")
				var val string
				if strings.HasPrefix(rest, `"`) {
					val, rest = quoted(rest)
				} else {
					val, rest = token(rest)
				}
				c.params[strings.ToLower(key)] = val
				s = strings.TrimLeft(rest, " ")
				if !strings.HasPrefix(s, ",") {
					break
				}
				s = strings.TrimLeft(s[1:], " ")
			}
			out = append(out, c)
		}
	}
	return out
}

// token splits off an RFC 7230 token.
func token(s string) (tok, rest string) {
	i := 0
	for i < len(s) && !strings.ContainsRune(" \t,=\"", rune(s[i])) {
		i++
	}
	return s[:i], s[i:]
}

// quoted splits off a quoted string, unescaping it.
func quoted(s string) (val, rest string) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '"':
			return b.String(), s[i+1:]
		case '\\':
			if i+1 < len(s) {
				i++
			}
		}
		b.WriteByte(s[i])
	}
	return b.String(), ""
}

// tokenCache keeps bearer tokens by realm, service, scope and who asked,
// until shortly before they expire, so that each layer of a pull (and the
// next pull) does not fetch a new one.
type tokenCache struct {
	mu     sync.Mutex
	tokens map[tokenKey]cachedToken
	now    func() time.Time
}

type tokenKey struct{ realm, service, scope, user string }

type cachedToken struct {
	token   string
	expires time.Time
}

// Docker's token spec: a token without expires_in lives 60 seconds.
const (
	defaultTokenLifetime = 60 * time.Second
	tokenExpirySlack     = 10 * time.Second
)

func newTokenCache() *tokenCache {
	return &tokenCache{tokens: map[tokenKey]cachedToken{}, now: time.Now}
}

func (c *tokenCache) get(k tokenKey) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.tokens[k]
	if !ok || !c.now().Before(t.expires) {
		delete(c.tokens, k)
		return "", false
	}
	return t.token, true
}

func (c *tokenCache) put(k tokenKey, token string, lifetime time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for key, t := range c.tokens { // drop expired ones; the map stays small
		if !now.Before(t.expires) {
			delete(c.tokens, key)
		}
	}
	c.tokens[k] = cachedToken{token: token, expires: now.Add(lifetime - tokenExpirySlack)}
}

// fetchToken gets a bearer token from the challenge's realm, with the
// credential if there is one (Docker's token authentication spec: GET
// with basic auth, or an OAuth2 POST for an identity token).
func fetchToken(ctx context.Context, hc *http.Client, ch challenge, scope string, cred *credential) (string, time.Duration, error) {
	realm := ch.params["realm"]
	u, err := url.Parse(realm)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return "", 0, fmt.Errorf("bearer challenge has a bad realm %q", realm)
	}
	q := u.Query()
	if s := ch.params["service"]; s != "" {
		q.Set("service", s)
	}
	if scope != "" {
		q.Set("scope", scope)
	}
	var req *http.Request
	if cred != nil && cred.identityToken != "" {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {cred.identityToken}, "client_id": {"orch"}}
		for k, v := range q {
			form[k] = v
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
		if err != nil {
			return "", 0, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		u.RawQuery = q.Encode()
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return "", 0, err
		}
		if cred != nil {
			req.SetBasicAuth(cred.username, cred.password)
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("get token: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("get token from %s: %w", u.Host, errorFromResponse(resp, ""))
	}
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return "", 0, fmt.Errorf("get token from %s: %w", u.Host, err)
	}
	tok := body.Token
	if tok == "" {
		tok = body.AccessToken
	}
	if tok == "" {
		return "", 0, fmt.Errorf("get token from %s: the answer has no token", u.Host)
	}
	life := time.Duration(body.ExpiresIn) * time.Second
	if life < defaultTokenLifetime {
		life = defaultTokenLifetime
	}
	return tok, life, nil
}
