# The two commands a new user needs; everything else is in README.md.
#
#   make demo   set up the machine, start the local two-region test bed, live traffic
#               on us-east, and strait
#   make test   set up the machine, fetch Kafka, build, start the test bed, run every
#               default test
#
# Both start with scripts/setup, which installs what is missing (Debian/Ubuntu, as root
# or with password-less sudo) or prints the command to run. Kafka's jars come from
# Maven Central (cached in deploy/local/.kafka), librdkafka is compiled by the rdkafka
# crate.
#
# Longer runs: `make video-demo` (real encoded video mirrored across regions, per-video table).

CARGO ?= cargo

.PHONY: setup test demo video-demo build lint testbed clean-testbed

setup:
	scripts/setup

build: setup
	$(CARGO) build --release --all-targets

# The project's own rules, held by CI: formatting, clippy without warnings, no broken
# intra-doc links. (`unsafe` outside src/kafka_ext.rs is denied by the compiler itself.)
lint: setup
	@$(CARGO) fmt --version >/dev/null 2>&1 && $(CARGO) clippy --version >/dev/null 2>&1 \
		|| { echo "lint: rustfmt or clippy is missing; run: rustup component add rustfmt clippy" >&2; exit 1; }
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	RUSTDOCFLAGS="-D rustdoc::broken_intra_doc_links -A rustdoc::private_intra_doc_links" \
		$(CARGO) doc --release --no-deps --document-private-items

testbed: setup
	deploy/local/testbed fetch
	deploy/local/testbed up

test: setup lint build testbed
	$(CARGO) test --release --no-fail-fast

demo: setup
	scripts/demo

video-demo:
	scripts/video-demo

clean-testbed:
	deploy/local/testbed reset
