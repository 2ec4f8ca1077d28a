#!/bin/sh
# test_times.sh FILE.xml [N]: the N (20) slowest test cases of the last
# `make test`, from the XML log check writes (CK_XML_LOG_FILE_NAME), then
# the seconds of each suite. A case's time is its own forked process's;
# check records none (-1) for a case that ends by exit() or a signal, as
# expected, and those count as 0.
xml=$1 n=${2:-20}
if [ ! -r "$xml" ]; then
  echo "test_times: no $xml: run make test first (it writes the times there)" >&2
  exit 1
fi
# One line per case: seconds, suite, test:iteration, file:line, result.
cases=$(awk '
  function value(s) { gsub(/^[^>]*>|<.*$/, "", s); return s }
  /<title>/        { suite = value($0) }
  /<test result=/  { res = $0; sub(/.*result="/, "", res); sub(/".*/, "", res) }
  /<fn>/           { fn = value($0) }
  /<id>/           { id = value($0) }
  /<iteration>/    { it = value($0) }
  /<duration>/ && id != "" {
    printf "%.3f %s %s:%s %s %s\n", value($0), suite, id, it, fn, res; id = ""
  }' "$xml")
echo "The $n slowest test cases of the last make test ($xml):"
echo "$cases" | sort -rn | head -n "$n" |
  awk '{ printf "%9.1f s  %-10s %-44s %s%s\n", $1, $2, $3, $4, $5 == "success" ? "" : "  (" $5 ")" }'
echo
echo "Seconds per suite:"
echo "$cases" | awk '{ s = $1 < 0 ? 0 : $1; t[$2] += s; c[$2]++; all += s; n++ }
  END { for (s in t) printf "%9.1f s  %-10s %d cases\n", t[s], s, c[s] | "sort -rn"
        close("sort -rn"); printf "%9.1f s  %-10s %d cases\n", all, "(all)", n }'
