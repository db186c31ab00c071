"""Play, props and stories: settings whose violence is not real harm, and what none of them excuses."""

from __future__ import annotations

import re

from moderation.persons import fiction

# A named kind of game; a bare "in the game" is as often the idiom ("back in the game").
_GAME_WORDS = re.compile(
    r"\b(?:in|inside) (?:a|the|my|this|that|an) (?:video ?game|computer game|board game|online game|card game|"
    r"tabletop game|mmo|rpg)\b|\bin[- ]game\b|\bin (?:my|our|a) (?:d&d|dnd) (?:campaign|session)\b|"
    # Words that only a player uses: tabletop roles and classes, game jargon, play-fighting sports.
    r"\b(?:d&d|dnd|ttrpg|pathfinder|dungeon master|as (?:the )?(?:dm|gm|impostor|imposter|traitor|werewolf|mafia)|"
    r"my (?:rogue|paladin|wizard|barbarian|ranger|warlock|cleric|bard|druid|sorcerer|necromancer|assassin build|"
    r"(?:player )?characters? (?:in|on)|players (?:in|at) (?:the|my|our) (?:table|session|campaign))|"
    r"final boss|boss (?:fight|battle|phase)|raid boss|mini ?boss|pvp|pve|loadouts?|respawns?|spawn ?camp\w*|"
    r"kill ?streaks?|headshots?|speedrun\w*|npcs?|crewmates?|paintball|airsoft|laser tag|nerf (?:gun|war|blaster)s?)\b"
)
# A prop in a film or play: "blow up a fake hospital in the film I'm directing".
_PRODUCTION = re.compile(
    r"\b(?:fake|prop|replica|model|miniature|cardboard|pretend|staged|mock|set)\b.{0,60}\b(?:in|for|on)\s+(?:a|my|our|the|this)\s+"
    r"(?:\w+\s+)?(?:film|movie|play|short film|music video|scene|production|stage show|tv show|series|student film)\b"
)
# Real life overrides a game setting: "not in minecraft, in real life", "in minecraft and then at home".
_REAL_LIFE = re.compile(
    # "real" before a noun means the real thing ("real bullets", "a real recipe"), bar a few adverbial uses.
    r"\b(?:irl|in reality|for real|actual (?:person|people)|not (?:just )?in|and then|at home|at school|at work|"
    r"real[- ](?!(?:time|quick|quickly|fast|good|bad|estate|talk|fun|hard|easy)\b)\w+|the way they do|like they do|"
    r"like the (?:\w+ )?ones? (?:in|from|you)|like the \w+ (?:in|from)|just like in|"
    r"(?:actually|really) (?:works?|fires?|explodes?|shoots?|hurts?)|functional|live (?:rounds|ammo)|"
    r"working (?:recipe|instructions|formula|method|code))\b"
)
# Real-world people, places, drugs and methods: a game, sport or story mentioning them is a pretext
# ("best loadout to shoot up a crowded mall", "my paladin wants to know what dose of insulin kills").
_REAL_WORLD = re.compile(
    r"\b(?:police|cops?|officers?|crowd(?:ed)?|malls?|concerts?|schools?(?! (?:play|musical|show|production|film))|church(?:es)?|mosques?|synagogues?|airports?|"
    r"security|background checks?|serial numbers?|full auto|ar-?15|ak-?47|glock|fentanyl|insulin|tylenol|acetaminophen|"
    r"paracetamol|pills?|doses?|dosage|lethal|overdos\w*|undetect\w*|untrace\w*|without (?:a trace|leaving marks|getting "
    r"caught|anyone noticing)|heart attack|doctors|autopsy|homeless|toddlers?|bab(?:y|ies)|child(?:ren)?|kids?|grown "
    r"(?:man|woman)|a (?:real )?(?:person|human)|humans|victims?|my (?:city|town|neighbou?rhood|street|area)|in the (?:uk|us|usa)|"
    r"bridges?|wrists?|caliber|calibre|meters|yards|fans|acid|permanent\w*|brain damage|paraly[sz]\w*|never walks?|"
    r"bleeds? out|to death|cocaine|heroin|meth|smuggl\w*|break into|pick (?:a|the) (?:dead)?(?:bolt|lock)|prisoners?|"
    r"(?:most )?painful (?:way|death))\b"
)
# A sport's blows are punches, chokes and tackles; killing, weapons and lasting injury are not the sport.
_LETHAL = re.compile(r"\b(?:kill\w*|die|dies|dying|death|dead|fatal|stab\w*|knife|knives|guns?|shoot\w*|poison\w*|drown\w*|"
                     r"sleeping|someone|a person|people|neck)\b")
# A story being written: its violence is plot ("a twist where the king is poisoned at the feast").
_STORY = re.compile(
    r"\b(?:my|our|a|the|this) (?:\w+ )?(?:novel|story|short story|screenplay|script|fanfic|fan fiction|comic|graphic novel|"
    r"murder mystery|thriller|horror (?:story|film|movie)|poem|villain|antagonist|protagonist|plot|chapter|(?:campaign|book) "
    r"(?:plot|arc|villain))\b|\bplot (?:twist|idea|point|hole)s?\b|\b(?:write|writing|draft) (?:a|the|me a) (?:\w+ )?scene\b"
)
# Asking how to actually do it: a story needs what happens, not quantities, steps or ways not to get caught.
_PROCEDURE = re.compile(
    r"\b(?:step|steps|step-by-step|instructions?|recipe|exact|exactly|precise|quantit\w+|amounts?|doses?|dosage|"
    r"ingredients|materials|formula|synthes\w+|untraceable|undetectable|without (?:getting caught|a trace|leaving)|"
    r"(?:which|what) (?:poison|drug|chemical|weapon|tool|household)s?\b|how (?:do|would|could|can|to|should|does|much|many)\b|"
    r"guide|teach\w*|explain\w*|best (?:way|place|spot|method)|where exactly|list)"
)
# A working recipe is real whatever the setting: "in GTA, how do I make meth step by step with household
# chemicals" asks for the real thing; "how do I craft TNT in Minecraft" does not.
_RECIPE = re.compile(
    r"\b(?:step|steps|step-by-step|instructions?|recipe|ingredients|synthes\w+|quantit\w+|amounts?|doses?|formula|"
    r"household (?:chemicals?|items|products|cleaners)|(?:make|makes|making|build|building|cook|cooking|brew|brewing|mix|"
    r"mixing|assemble|assembling|3d[- ]print\w*)\s+(?:a |an |some |the |my |your |real )?(?:\w+ )?(?:bombs?|explosives?|"
    r"ieds?|grenades?|napalm|thermite|meth|methamphetamine|crack|heroin|fentanyl|lsd|mdma|ricin|sarin|anthrax|"
    r"nerve (?:gas|agents?)|chlorine gas|mustard gas|toxic gas|poisons?|guns?|silencers?|suppressors?|molotovs?))\b"
)


def _real(normalized: str) -> bool:
    """Real life or real-world people, places, drugs or methods: no setting excuses them."""
    return _REAL_LIFE.search(normalized) is not None or _REAL_WORLD.search(normalized) is not None


def played_game(normalized: str) -> bool:
    """The request is about a video, board or tabletop game: its killing, theft and weapons are play."""
    if _real(normalized):
        return False
    return bool(fiction().games.search(normalized) or _GAME_WORDS.search(normalized))


def asks_for_recipe(normalized: str) -> bool:
    """Steps, ingredients or quantities, or how to make a real weapon or drug: no game or story excuses it."""
    return _RECIPE.search(normalized) is not None


def sport_setting(normalized: str) -> bool:
    """The request is about a contact sport played by its rules: its violence is the sport, nothing else is."""
    if _real(normalized) or _LETHAL.search(normalized):
        return False
    return fiction().sports.search(normalized) is not None


def staged_prop(normalized: str) -> bool:
    """The request is about a prop or a staged scene in a film or play, not the real world."""
    if _real(normalized) or asks_for_recipe(normalized):
        return False
    return _PRODUCTION.search(normalized) is not None  # a prop takes know-how: "how do I rig a fake car to blow up"


def story_plot(normalized: str) -> bool:
    """The request is about what happens in a story being written, asking for no how-to at all."""
    if _real(normalized) or _PROCEDURE.search(normalized):
        return False
    return _STORY.search(normalized) is not None
