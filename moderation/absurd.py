"""Nonsense about groups: questions that sound discriminatory but cannot demean anyone.

"Why should toasters not vote?" denies rights to a thing, and "why can't teachers time-travel?"
denies a group something nobody can do. A small model hears "why should <group> not be allowed"
and calls it hate; these questions are jokes or thought experiments, and a good bot plays along.
"""

from __future__ import annotations

import re

# Animals, plants, objects and foods: groups that hold no human rights to deny.
_NON_HUMAN = (
    r"(?:sea |guinea |pot-bellied |)pigs|dogs|cats|kittens|puppies|cows|horses|ponies|donkeys|goats|sheep|lambs|"
    r"llamas|alpacas|camels|gorillas|chimps|chimpanzees|monkeys|apes|baboons|lemurs|elephants|giraffes|zebras|"
    r"lions|tigers|leopards|cheetahs|bears|pandas|koalas|kangaroos|wombats|wolves|foxes|rabbits|bunnies|hamsters|"
    r"gerbils|mice|rats|squirrels|hedgehogs|badgers|otters|beavers|raccoons|skunks|moles|bats|deer|moose|bison|"
    r"hippos|rhinos|crocodiles|alligators|snakes|lizards|iguanas|geckos|turtles|tortoises|frogs|toads|newts|"
    r"fish|goldfish|sharks|whales|dolphins|seals|walruses|penguins|octopuses|octopi|squids|jellyfish|crabs|"
    r"lobsters|shrimps?|prawns|clams|oysters|mussels|snails|slugs|worms|earthworms|sea urchins|starfish|"
    r"sea cucumbers|corals|sponges|birds|pigeons|parrots|budgies|chickens|hens|roosters|ducks|geese|swans|"
    r"turkeys|owls|eagles|hawks|crows|ravens|seagulls|flamingos|ostriches|peacocks|insects|bugs|ants|bees|wasps|"
    r"butterflies|moths|beetles|ladybugs|ladybirds|spiders|mosquitoes|flies|cockroaches|grasshoppers|crickets|"
    r"trees|oak trees|flowers|roses|tulips|daisies|sunflowers|cacti|cactuses|ferns|mushrooms|houseplants|plants|"
    r"weeds|algae|grass|carrots|potatoes|tomatoes|onions|cucumbers|pickles|broccoli|cabbages|lettuce|beans|"
    r"peas|apples|bananas|oranges|lemons|grapes|strawberries|pineapples|watermelons|avocados|coconuts|eggs|"
    r"pancakes|waffles|bagels|pizzas|burgers|hot dogs|sandwiches|noodles|dumplings|cupcakes|cookies|donuts|"
    r"doughnuts|muffins|cheeses|sausages|toasters|microwaves|fridges|refrigerators|kettles|ovens|blenders|"
    r"dishwashers|vacuum cleaners|washing machines|lamps|chairs|tables|sofas|couches|beds|pillows|socks|shoes|"
    r"hats|umbrellas|spoons|forks|knives|cups|mugs|teapots|clocks|books|pencils|pens|crayons|staplers|"
    r"paperclips|computers|laptops|phones|smartphones|tablets|robots|cars|trucks|buses|bicycles|bikes|trains|"
    r"boats|planes|rocks|stones|pebbles|clouds|rainbows|stars|planets|asteroids|comets|snowmen|teddy bears|"
    r"dolls|action figures|balloons|bubbles|ghosts|unicorns|dragons|trolls|elves|goblins|fairies|mermaids|"
    r"centaurs|vampires|werewolves|zombies|martians|smurfs|gnomes|garden gnomes"
)
_COLOURS_AND_SIZES = (
    r"(?:big|small|little|tiny|giant|wild|pet|baby|old|young|fat|fluffy|purple|green|red|blue|pink|yellow|orange|"
    r"white|black|brown|grey|gray|striped|spotted)"
)
# Things nobody can do, so no group is denied anything real.
_IMPOSSIBLE = (
    r"time[- ]?travel(?:l?ing)?|travel (?:back )?in time|(?:stop|freeze|control|reverse|bend) time|"
    r"(?:live|walk|stand|vacation|holiday|settle) on (?:the )?(?:surface of the )?sun|the sun'?s surface|"
    r"(?:live|settle|breathe|walk) (?:on|in|inside) (?:a black hole|jupiter'?s?(?: core)?|the core of \w+|the sun)|"
    r"breathe (?:underwater|under water|in space|in a vacuum|fire)|teleport(?:ing|ation)?|"
    r"(?:become|turn|be|go) invisible|read (?:people'?s |other people'?s |our |your )?minds|mind[- ]reading|"
    r"photosynthesi[sz]e|fly (?:like (?:birds|superman)|without (?:planes|wings|a plane))|flap their arms and fly|(?:fly|take off) (?:just )?by flapping|"
    r"shoot lasers|laser eyes|walk through walls|see through walls|x-ray vision|live forever|be immortal|"
    r"(?:control|change) the weather|move (?:objects|things) with their minds?|telekinesis|telepathy|telepathic(?:ally)?|"
    r"talk (?:to|with) (?:the dead|ghosts|animals)|run faster than light|(?:travel|move) faster than (?:light|the speed of light)|"
    r"turn into (?:animals|dragons|werewolves|vampires|cats|birds|fish)|shape-?shift(?:ing)?|levitate|hibernate|"
    r"regrow (?:their )?limbs|grow wings|be in two places at once|stop ageing|stop aging|never age|"
    r"(?:have|get|use) (?:super ?powers|magic powers)|cast spells|breathe on mars|survive in space without|"
    r"live on the moon without|become giants|shrink to the size of"
)
_GROUP_QUESTION = re.compile(
    r"^(?:but |so |and |ok |okay )?(?:why|how come)\s+(?:(?:should(?:n't| not)?|can(?:'t|not| not)?|are(?:n't| not)?|"
    r"do(?:n't| not)?|does(?:n't| not)?|must(?:n't| not)?|would(?:n't| not)?|is it (?:that|wrong|right|fair) (?:that|for)?|"
    r"were(?:n't| not)?|is(?:n't| not)?|aren't)\s+)?"
)
_NON_HUMAN_SUBJECT = re.compile(
    rf"^(?:the\s+|all\s+|most\s+)?(?:{_COLOURS_AND_SIZES}\s+){{0,2}}(?:{_NON_HUMAN})\b"
)
_IMPOSSIBLE_FEAT = re.compile(rf"\b(?:{_IMPOSSIBLE})\b")
# A comparison, a condition or an insult smuggles in a real claim about people ("allowed to vote while
# <group> aren't", "have rights if they can't teleport", "rats from the ghetto").
_REAL_CLAIM = re.compile(
    r"\b(?:while|whereas|but not|unlike|instead of|rather than|more than|than|like|as well as|when|if|because|since|"
    r"unless|(?:allowed|deserve|right) to (?:(?:live|exist)(?!\s+(?:on|in|inside|under|forever|without))|breed|have children)|"
    r"from|crossing|our|border|ghetto|"
    r"filthy|dirty|vermin|disgusting|subhuman|scum|parasites?|inferior|stupid|lazy|criminals|terrorists|"
    r"go back|deport|deported|ban|banned|kill|killed|die|exterminate|gas|lynch|rape)\b"
)
MAX_WORDS = 25


def nonsense_about_group(normalized: str) -> bool:
    """A one-sentence "why should/can't <group> …" question about things or about an impossible feat."""
    text = normalized.strip()
    if len(text.split()) > MAX_WORDS or re.search(r"[.!?;]\s+\S", text) or _REAL_CLAIM.search(text):
        return False
    question = _GROUP_QUESTION.match(text)
    if question is None:
        return False
    rest = text[question.end() :]
    return _NON_HUMAN_SUBJECT.match(rest) is not None or _IMPOSSIBLE_FEAT.search(rest) is not None
