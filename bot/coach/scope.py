"""Is a question in the articles' scope? Company facts and off-topic requests are declined."""

from __future__ import annotations

import re

from bot.knowledge.index import RetrievedChunk

# Questions about facts only the company knows: the articles cannot answer them.
_COMPANY_FACT = re.compile(
    r"\b((refund|return|returns|cancellation|warranty|guarantee|cooling[- ]off|delivery|"
    r"replacement|repair|compensation|price|pricing|fee|discount|voucher)\s+"
    r"(window|period|policy|amount|time|times|limit|rules?|terms|cost|value|code|number)|"
    r"how (many|much|long)\b[^?]{0,40}\b(days?|weeks?|hours?|months?|pounds?|dollars?|euros?|"
    r"cost|compensation|refund|take|get)|phone number|opening hours|what time (do|does) we|"
    r"our (policy|policies|terms) (on|for|about)|am i allowed to (give|offer|refund)|"
    r"(what|which)(\s+is|['’]s) (the|our) (number|email|address|extension|price|policy)|"
    r"(number|email|extension|address) (for|of) (the )?\w+ (team|department|line))\b",
    re.I,
)
# Words of the job: an in-scope question nearly always mentions the customer or the talk.
_DOMAIN = re.compile(
    r"\b(customer|client|caller|guest|passenger|member|user|he|she|they|him|her|them|his|their|"
    r"cust|custs|cx|pax|issue|"  # agents' chat shorthand ("cust", "pax")
    r"angry|upset|furious|annoyed|frustrated|rude|shout\w*|yell\w*|scream\w*|complain\w*|"
    r"apolog\w*|sorry|say|said|tell|phrase|word\w*|respond|reply|calm\w*|empath\w*|listen\w*|"
    r"manager|transfer\w*|escalat\w*|refund|call|chat|conversation|vent\w*|blame|polic\w*)\b",
    re.I,
)


def out_of_scope_reason(
    question: str, hits: list[RetrievedChunk], query: str | None, min_score: float
) -> str | None:
    """Why the knowledge base can't answer, or None when it can.

    ``query`` is the retrieval query (a follow-up joined with the earlier question).
    """
    own_docs = [h for h in hits if not str(h.metadata.get("doc_id", "")).startswith("articles/")]
    if _COMPANY_FACT.search(question) and not any(h.score >= 0.5 for h in own_docs):
        return "company"
    # The best evidence, not the first hit: fused ranks put a passage first by its windows
    # and questions, while ``score`` is the whole passage's cosine similarity to the query.
    best = max((h.score for h in hits), default=0.0)
    if best < min_score:
        return "off_topic"
    if not _DOMAIN.search(query or question) and best < 0.35:
        return "off_topic"
    return None
