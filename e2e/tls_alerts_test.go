package e2e

import (
	"testing"
)

// TestAlertsCertificateExpiresSoon runs promtool's unit test of the
// ObsproxyCertificateExpiresSoon rule: a certificate with 13 days left
// fires after 10 minutes, one with 30 days left does not (spec section 11).
// promtool's clock starts at the Unix epoch, so time() is the eval time.
func TestAlertsCertificateExpiresSoon(t *testing.T) {
	promtoolTestRules(t, certificateAlertTests)
}

const certificateAlertTests = `
rule_files:
  - RULES_FILE
evaluation_interval: 1m
tests:
  - name: ObsproxyCertificateExpiresSoon
    interval: 1m
    input_series:
      # 13 days + 20 minutes after the epoch: 13 days left at 20m
      - series: 'obsproxy_tls_certificate_not_after_seconds{job="obsproxy",instance="op:9090",name="shop.example.com"}'
        values: '1124400x30'
      # 30 days left
      - series: 'obsproxy_tls_certificate_not_after_seconds{job="obsproxy",instance="op:9090",name="api.example.com"}'
        values: '2592000x30'
    alert_rule_test:
      - eval_time: 5m
        alertname: ObsproxyCertificateExpiresSoon
        exp_alerts: []
      - eval_time: 20m
        alertname: ObsproxyCertificateExpiresSoon
        exp_alerts:
          - exp_labels: {severity: warning, job: obsproxy, instance: "op:9090", name: shop.example.com}
            exp_annotations:
              summary: "certificate shop.example.com of op:9090 expires in 13d 0h 0m 0s"
              description: "The certificate for shop.example.com expires in under 14 days. With certificate files: replace them (obsproxy reloads them without a restart; obsproxy_tls_reloads_total{result=\"failure\"} counts files it refused). With ACME: read obsproxy's log for acme errors and check that the CA reaches the public listener for TLS-ALPN-01."
`
