"""The topic bank the demo corpus draws its text from.

Each topic is split into facets (sub-topics). A document covers a subset of its topic's
facets, and facet vocabulary appears only in that facet's sections, so "this document
discusses X" is a fact the generator knows, which is what makes the labelled queries
usable as retrieval ground truth. Facts are hand-written and true to the best of our
knowledge; the generic templates in `compose` only glue facet terms together.

Queries are phrased the way people type into a search box and must not be copies of
document sentences (tests check this), otherwise retrieval evaluation would reward exact
string matching.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Facet:
    key: str
    name: str
    headings: tuple[str, ...]
    terms: tuple[str, ...]
    facts: tuple[str, ...]
    tips: tuple[str, ...]
    queries: tuple[str, ...]


@dataclass(frozen=True)
class Topic:
    key: str
    name: str
    # How the topic reads mid-sentence ("GDPR compliance", not "gdpr compliance").
    phrase: str
    description: str
    capsule_titles: tuple[str, ...]
    terms: tuple[str, ...]
    facts: tuple[str, ...]
    queries: tuple[str, ...]
    facets: tuple[Facet, ...]
    palette: tuple[tuple[int, int, int], ...]

    def facet(self, key: str) -> Facet:
        for facet in self.facets:
            if facet.key == key:
                return facet
        raise KeyError(f"topic {self.key!r} has no facet {key!r}")


_TOPIC_LIST: tuple[Topic, ...] = (
    Topic(
        key="sourdough_baking",
        name="Sourdough Baking",
        phrase="sourdough baking",
        description=(
            "Practical sourdough baking for home kitchens: keeping a starter alive, reading "
            "fermentation, and baking loaves with an open crumb and a crackling crust."
        ),
        capsule_titles=("The Home Sourdough Workshop", "Wild Yeast, Real Bread"),
        terms=("sourdough", "wild yeast", "lactic acid bacteria", "flour choice", "dough hydration", "the crumb", "the crust", "salt"),
        facts=(
            "Sourdough bread is leavened by a culture of wild yeast and lactic acid bacteria rather than commercial baker's yeast.",
            "The bacteria in a starter produce lactic and acetic acids, which give sourdough its tang and help the loaf keep for several days.",
            "Hydration is the weight of water expressed as a percentage of the weight of flour, so 750 g of water in 1 kg of flour is a 75% dough.",
            "Most home bakers can produce a good loaf with only four ingredients: flour, water, salt and an active starter.",
            "A long, cool fermentation develops more flavour than a fast, warm one, at the cost of planning ahead.",
            "Baker's percentages make it easy to scale a recipe from one loaf to ten without changing its character.",
            "French bakers distinguish a levain from pâte fermentée, a piece of old dough kept back from the previous batch.",
        ),
        queries=(
            "getting started with sourdough bread at home",
            "what makes sourdough different from normal bread",
            "sourdough for beginners",
        ),
        facets=(
            Facet(
                key="starter",
                name="Starter Care",
                headings=("Keeping a Starter Alive", "Feeding Schedules", "Reviving a Neglected Starter"),
                terms=("your starter", "the levain", "the feeding ratio", "discard", "rye flour", "peak activity", "hooch", "the float test"),
                facts=(
                    "A new starter usually takes between five and ten days of daily feeding before it can reliably raise a loaf.",
                    "A feeding ratio of 1:5:5 means one part starter, five parts flour and five parts water by weight.",
                    "Whole rye flour gives a starter more nutrients and wild yeast than white flour, so many bakers use it during the first week.",
                    "A grey liquid on top of a starter, often called hooch, is alcohol produced by hungry yeast and a sign the culture needs feeding.",
                    "A starter is at peak activity when it has roughly doubled, has a domed top and smells pleasantly sour rather than sharp.",
                    "Storing a mature starter in the fridge slows it down enough that a weekly feeding is sufficient.",
                    "The float test, dropping a spoonful of starter into water, is a rough indicator of gas production but not a perfect one.",
                    "A levain is a portion of starter built up specifically for one bake, often with a different flour or ratio.",
                ),
                tips=(
                    "Feed at the same time each day for the first two weeks.",
                    "Mark the jar with a rubber band after feeding to see how far it rises.",
                    "Keep a small backup of starter in the fridge.",
                    "Use filtered water if your tap water is heavily chlorinated.",
                    "Weigh everything; cups are too inaccurate for a young culture.",
                ),
                queries=(
                    "how often do i need to feed my sourdough starter",
                    "starter smells like nail polish is it dead",
                    "why isn't my new starter rising",
                ),
            ),
            Facet(
                key="fermentation",
                name="Bulk Fermentation and Shaping",
                headings=("Reading Bulk Fermentation", "Stretch and Folds", "Shaping and Proofing"),
                terms=("bulk fermentation", "the autolyse", "stretch and folds", "coil folds", "dough temperature", "the bench rest", "the banneton", "a cold retard", "the poke test"),
                facts=(
                    "Bulk fermentation is the first rise of the whole dough, and it typically lasts four to six hours at 24 °C.",
                    "An autolyse, resting just flour and water for thirty minutes to an hour, lets gluten start forming before salt and starter are added.",
                    "Sets of stretch and folds during the first two hours of bulk build strength without the need for intensive kneading.",
                    "Dough temperature is the single most useful number for predicting how fast fermentation will go.",
                    "Many bakers end bulk fermentation when the dough has grown by about 50 percent, looks domed and jiggles when the bowl is shaken.",
                    "A cold retard in the fridge overnight makes the dough easier to score and deepens its flavour.",
                    "A banneton supports the shaped loaf during proofing so that it keeps its height instead of spreading.",
                    "The poke test, pressing a floured finger into the dough, helps judge the final proof: a slow spring back is what you want.",
                ),
                tips=(
                    "Take the dough temperature right after mixing.",
                    "Use a straight-sided container so the rise is easy to measure.",
                    "Wet your hands, not the bench, during stretch and folds.",
                    "Build surface tension when shaping by dragging the dough towards you.",
                    "Dust the banneton with rice flour to stop sticking.",
                ),
                queries=(
                    "how long should bulk fermentation take",
                    "sourdough dough too sticky to shape",
                    "can i leave shaped dough in the fridge overnight",
                ),
            ),
            Facet(
                key="baking",
                name="Scoring and Baking",
                headings=("Scoring the Loaf", "Steam and Oven Spring", "Judging the Bake"),
                terms=("oven spring", "scoring", "the lame", "the dutch oven", "steam", "the ear", "internal temperature", "an open crumb", "crust colour"),
                facts=(
                    "Oven spring is the rapid rise a loaf makes in the first fifteen minutes of baking as gas expands and yeast makes a final burst of activity.",
                    "Baking inside a preheated dutch oven traps steam from the dough itself, keeping the crust soft long enough for the loaf to expand.",
                    "A lame is a razor blade on a handle, and holding it at a shallow angle produces the raised flap of crust bakers call an ear.",
                    "Most lean sourdough loaves are fully baked when the internal temperature reaches around 96 to 98 °C.",
                    "Removing the lid of the dutch oven after twenty minutes lets the crust dry out, colour and crackle.",
                    "Cutting into a loaf before it has cooled for at least an hour leaves the crumb gummy, because starches are still setting.",
                    "A dense, tight crumb usually points to under-fermentation rather than to a problem with the oven.",
                    "Large irregular holes, an open crumb, come from good fermentation, high hydration and gentle handling together.",
                ),
                tips=(
                    "Preheat the oven and pot for at least 45 minutes.",
                    "Score with one confident stroke rather than several hesitant ones.",
                    "Bake until the crust is deep brown, not just golden.",
                    "Let the loaf cool on a rack for at least an hour.",
                    "Keep a baking log with times, temperatures and photos of the crumb.",
                ),
                queries=(
                    "how to get a bigger ear on sourdough",
                    "bread dense and gummy inside",
                    "do i need a dutch oven to bake bread",
                ),
            ),
        ),
        palette=((196, 154, 108), (120, 82, 45), (245, 230, 204)),
    ),
    Topic(
        key="marine_biology",
        name="Marine Biology",
        phrase="marine biology",
        description=(
            "An introduction to life in the ocean, from sunlit coral reefs to the deep sea and "
            "the whales, dolphins and seals that roam between them."
        ),
        capsule_titles=("Life Beneath the Waves", "Ocean Life 101"),
        terms=("the ocean", "marine ecosystems", "plankton", "the food web", "salinity", "biodiversity", "ocean currents"),
        facts=(
            "The ocean covers about 71 percent of the Earth's surface and holds roughly 97 percent of its water.",
            "Phytoplankton produce a large share of the oxygen in the atmosphere through photosynthesis.",
            "Marine food webs usually start with microscopic plankton and end with large predators such as sharks and toothed whales.",
            "Scientists estimate that most marine species have not yet been formally described.",
            "Temperature, light and salinity together decide which organisms can live in a particular part of the sea.",
            "Ocean currents carry heat from the tropics towards the poles and shape the climate on land.",
            "Jacques-Yves Cousteau's films brought the underwater world to television audiences from the 1950s onwards.",
        ),
        queries=(
            "introduction to ocean life",
            "how does the ocean food chain work",
            "marine biology basics",
        ),
        facets=(
            Facet(
                key="coral_reefs",
                name="Coral Reefs",
                headings=("How Coral Reefs Form", "Life on the Reef", "Threats to Reefs"),
                terms=("coral polyps", "zooxanthellae", "coral bleaching", "reef fish", "calcium carbonate", "the Great Barrier Reef", "atolls", "ocean acidification"),
                facts=(
                    "Reef-building corals are colonies of tiny animals called polyps that secrete skeletons of calcium carbonate.",
                    "Most reef corals depend on symbiotic algae, zooxanthellae, which live in their tissues and supply sugars from photosynthesis.",
                    "Coral bleaching happens when heat stress makes corals expel their algae, leaving the white skeleton visible through clear tissue.",
                    "Coral reefs cover less than one percent of the sea floor but support around a quarter of all known marine species.",
                    "The Great Barrier Reef off Australia is the largest reef system in the world.",
                    "An atoll is a ring-shaped reef that grew around a volcanic island which has since sunk beneath the surface.",
                    "Ocean acidification lowers the amount of carbonate available in seawater, making it harder for corals to build skeletons.",
                    "Parrotfish graze algae from reefs and grind coral into sand, producing much of the white sand on tropical beaches.",
                ),
                tips=(
                    "Never touch or stand on coral when snorkelling.",
                    "Use reef-safe sunscreen without oxybenzone.",
                    "Report bleaching sightings to citizen science programmes.",
                    "Choose dive operators that use mooring buoys instead of anchors.",
                    "Learn to identify a few common reef fish before your trip.",
                ),
                queries=(
                    "why do corals turn white",
                    "how much sea life depends on reefs",
                    "what is an atoll",
                ),
            ),
            Facet(
                key="deep_sea",
                name="Deep Sea",
                headings=("Into the Twilight Zone", "Life Without Sunlight", "Exploring the Abyss"),
                terms=("the deep sea", "bioluminescence", "hydrothermal vents", "chemosynthesis", "anglerfish", "the twilight zone", "water pressure", "submersibles", "the Mariana Trench"),
                facts=(
                    "Below about 200 metres sunlight fades quickly, and below 1,000 metres the ocean is completely dark.",
                    "Many animals in the twilight zone produce their own light through bioluminescence to hunt, hide or find mates.",
                    "Hydrothermal vents release mineral-rich hot water, and communities around them are fuelled by chemosynthesis rather than sunlight.",
                    "Giant tube worms at hydrothermal vents have no mouth or gut and rely on bacteria living inside them.",
                    "At the bottom of the Mariana Trench the pressure is more than a thousand times the pressure at sea level.",
                    "Female anglerfish lure prey with a glowing rod on their heads, while in some species the males fuse permanently to the female.",
                    "Every night, huge numbers of small animals migrate from the depths towards the surface to feed, the largest daily migration on Earth.",
                    "Crewed submersibles and remotely operated vehicles have explored only a tiny fraction of the deep sea floor.",
                ),
                tips=(
                    "Look for live feeds from research vessels exploring the deep sea.",
                    "Visit an aquarium with a dedicated deep-sea gallery.",
                    "Compare depth charts to get a feel for the scale of ocean trenches.",
                    "Read expedition logs rather than headlines for accurate details.",
                    "Follow marine research institutes that publish open video archives.",
                ),
                queries=(
                    "how do animals make light in the deep ocean",
                    "what lives near hydrothermal vents",
                    "how deep is the mariana trench",
                ),
            ),
            Facet(
                key="marine_mammals",
                name="Whales, Dolphins and Seals",
                headings=("Marine Mammals at a Glance", "Echolocation and Song", "Watching Marine Mammals Responsibly"),
                terms=("whales", "dolphins", "seals", "echolocation", "baleen", "blubber", "migration", "dolphin pods", "humpback song"),
                facts=(
                    "Whales, dolphins and seals breathe air, nurse their young with milk and keep warm with a thick layer of blubber.",
                    "Baleen whales such as the humpback filter small crustaceans and fish through plates of baleen instead of teeth.",
                    "Toothed whales and dolphins use echolocation, sending out clicks and listening for echoes to find prey.",
                    "Male humpback whales sing long, complex songs that change gradually over the years and spread between populations.",
                    "The blue whale is the largest animal known to have lived, reaching more than 30 metres in length.",
                    "Grey whales make one of the longest migrations of any mammal, travelling between Arctic feeding grounds and Mexican lagoons.",
                    "Dolphins live in social groups called pods, and some populations pass on hunting techniques from mother to calf.",
                    "Sea lions differ from true seals in having external ear flaps and being able to turn their hind flippers forward to walk on land.",
                ),
                tips=(
                    "Choose whale-watching operators that follow a recognised code of conduct.",
                    "Keep at least 100 metres from whales when on the water.",
                    "Never feed or try to swim with wild dolphins.",
                    "Give resting seals on beaches plenty of space.",
                    "Report stranded animals to the local rescue network instead of intervening.",
                ),
                queries=(
                    "difference between seals and sea lions",
                    "why do humpback whales sing",
                    "how do dolphins find food with sound",
                ),
            ),
        ),
        palette=((18, 78, 120), (40, 160, 190), (230, 245, 250)),
    ),
    Topic(
        key="personal_finance",
        name="Personal Finance",
        phrase="personal finance",
        description=(
            "Down-to-earth money management: building a budget that survives real life, investing "
            "for the long term and getting out of debt."
        ),
        capsule_titles=("Money Basics for Real Life", "Your Financial Fitness Plan"),
        terms=("money", "income", "savings", "financial goals", "net worth", "compound interest", "the household budget"),
        facts=(
            "Net worth is simply everything you own minus everything you owe, and tracking it once a quarter shows whether you are moving forward.",
            "Compound interest means you earn returns on previous returns, so time in the market matters as much as the amount invested.",
            "Automating savings on payday removes the need to rely on willpower at the end of the month.",
            "Inflation quietly erodes the value of cash, which is why long-term savings are usually invested rather than left in a current account.",
            "Writing down clear financial goals with amounts and dates makes it much easier to prioritise spending.",
            "Many financial plans fail not because of bad investments but because of irregular expenses nobody planned for.",
        ),
        queries=(
            "how to get better with money",
            "personal finance basics for beginners",
            "where do i start sorting out my finances",
        ),
        facets=(
            Facet(
                key="budgeting",
                name="Budgeting and Emergency Funds",
                headings=("Building a Budget That Works", "The Emergency Fund", "Tracking Spending"),
                terms=("the budget", "the 50/30/20 rule", "the emergency fund", "fixed costs", "sinking funds", "a spending tracker", "zero-based budgeting", "cash flow"),
                facts=(
                    "The 50/30/20 rule suggests spending about half of take-home pay on needs, 30 percent on wants and 20 percent on savings and debt repayment.",
                    "An emergency fund covering three to six months of essential expenses protects you from having to borrow when something goes wrong.",
                    "In a zero-based budget every unit of income is assigned a job, whether that is rent, groceries or savings.",
                    "Sinking funds spread large predictable costs, such as car repairs or holidays, into small monthly amounts.",
                    "Tracking spending for just one month often reveals subscriptions and small purchases that add up to a surprising total.",
                    "Fixed costs like rent and insurance are hard to change quickly, so the biggest budget wins usually come from reviewing them once a year.",
                    "Keeping the emergency fund in a separate easy-access savings account makes it less tempting to spend.",
                    "A budget should be reviewed every month, because income and expenses change more often than people expect.",
                ),
                tips=(
                    "List every subscription and cancel the ones you forgot about.",
                    "Move savings automatically on the day you are paid.",
                    "Give irregular costs their own sinking fund.",
                    "Review insurance and energy contracts once a year.",
                    "Keep the emergency fund in a separate account.",
                ),
                queries=(
                    "how much should i keep in an emergency fund",
                    "simple way to make a monthly budget",
                    "what is a sinking fund",
                ),
            ),
            Facet(
                key="investing",
                name="Investing for the Long Term",
                headings=("Why Index Funds", "Asset Allocation", "Pensions and Tax Wrappers"),
                terms=("index funds", "asset allocation", "diversification", "expense ratios", "stocks", "bonds", "your pension", "dollar-cost averaging", "rebalancing"),
                facts=(
                    "An index fund tracks a whole market, such as a broad stock index, instead of trying to pick winning companies.",
                    "Low expense ratios matter because fees are taken every year whether the fund performs well or not.",
                    "Asset allocation, the split between stocks, bonds and cash, explains most of the variation in a portfolio's long-term returns.",
                    "Diversification across many companies and countries reduces the damage any single failure can do.",
                    "Investing a fixed amount every month, known as dollar-cost averaging, smooths out the effect of market swings.",
                    "Rebalancing once a year brings a portfolio back to its target allocation after markets have moved.",
                    "Employer pension schemes often include matching contributions, which are effectively an instant return on your money.",
                    "Money you may need within the next five years is usually better kept out of the stock market.",
                ),
                tips=(
                    "Check the expense ratio before buying any fund.",
                    "Pick an allocation you can stick with in a falling market.",
                    "Contribute at least enough to get the full employer match.",
                    "Rebalance on a fixed date rather than in response to headlines.",
                    "Keep short-term money out of the stock market.",
                ),
                queries=(
                    "are index funds better than picking stocks",
                    "how to split money between stocks and bonds",
                    "is it worth paying into a workplace pension",
                ),
            ),
            Facet(
                key="debt",
                name="Debt and Credit",
                headings=("Understanding Debt", "Paying It Down", "Your Credit Score"),
                terms=("debt", "credit cards", "the APR", "the avalanche method", "the snowball method", "your credit score", "minimum payments", "consolidation loans", "the overdraft"),
                facts=(
                    "The avalanche method pays off the debt with the highest interest rate first and saves the most money overall.",
                    "The snowball method clears the smallest balance first, which many people find more motivating.",
                    "Paying only the minimum on a credit card can stretch a modest balance over many years and double its total cost.",
                    "An APR includes interest and certain fees, which makes it the fairest way to compare loans.",
                    "A consolidation loan only helps if its rate is lower and you stop adding new debt to the old cards.",
                    "Credit scores are shaped mainly by payment history, how much of your available credit you use and how long you have held accounts.",
                    "Using less than about 30 percent of your credit limit is commonly recommended for a healthy credit score.",
                    "Setting up automatic payments for at least the minimum amount prevents late fees and damage to your credit record.",
                ),
                tips=(
                    "List every debt with its balance and interest rate.",
                    "Set up automatic minimum payments on all cards.",
                    "Put every spare amount towards one target debt at a time.",
                    "Check your credit report for errors once a year.",
                    "Avoid opening new credit while paying down old balances.",
                ),
                queries=(
                    "fastest way to pay off credit card debt",
                    "snowball or avalanche which is better",
                    "what lowers your credit score",
                ),
            ),
        ),
        palette=((34, 120, 74), (200, 170, 60), (236, 244, 236)),
    ),
    Topic(
        key="kubernetes_operations",
        name="Kubernetes Operations",
        phrase="Kubernetes operations",
        description=(
            "Running Kubernetes in production: scheduling workloads sensibly, wiring up networking "
            "and ingress, and keeping clusters observable when things break."
        ),
        capsule_titles=("Kubernetes in Production", "The Cluster Operator's Handbook"),
        terms=("Kubernetes", "the cluster", "the control plane", "worker nodes", "kubectl", "manifests", "namespaces"),
        facts=(
            "Kubernetes is a container orchestrator: you declare the desired state in manifests and controllers work continuously to make reality match.",
            "The control plane runs the API server, the scheduler, the controller manager and etcd, which stores the cluster state.",
            "Namespaces separate teams and environments inside one cluster, and quotas can limit how much each namespace consumes.",
            "kubectl talks to the API server, so every change you make with it is validated in the same way as automated changes.",
            "Keeping manifests in version control and applying them through a pipeline makes clusters reproducible.",
            "Managed Kubernetes services run the control plane for you, but node upgrades and workload health remain your responsibility.",
        ),
        queries=(
            "running kubernetes in production",
            "kubernetes cluster operations guide",
            "what does a kubernetes operator need to know",
        ),
        facets=(
            Facet(
                key="workloads",
                name="Workloads and Scheduling",
                headings=("Pods, Deployments and StatefulSets", "Resource Requests and Limits", "Scheduling and Autoscaling"),
                terms=("pods", "Deployments", "StatefulSets", "resource requests", "CPU limits", "OOMKilled containers", "node affinity", "taints and tolerations", "the HorizontalPodAutoscaler"),
                facts=(
                    "A Deployment manages a ReplicaSet of identical pods and performs rolling updates when the pod template changes.",
                    "StatefulSets give each pod a stable name and its own persistent volume, which databases and queues need.",
                    "The scheduler places pods using their resource requests, not their actual usage, so requests that are too low lead to overcrowded nodes.",
                    "A container that exceeds its memory limit is killed and reported with the reason OOMKilled.",
                    "CPU limits throttle a container rather than killing it, which can show up as mysterious latency spikes.",
                    "Taints keep ordinary pods off special nodes, and only pods with a matching toleration can be scheduled there.",
                    "The HorizontalPodAutoscaler adds or removes replicas based on metrics such as CPU utilisation or requests per second.",
                    "A PodDisruptionBudget limits how many replicas can be taken down at once during voluntary disruptions like node drains.",
                ),
                tips=(
                    "Set memory requests equal to memory limits for predictable behaviour.",
                    "Base requests on observed usage, not guesses.",
                    "Add a PodDisruptionBudget to every replicated service.",
                    "Reserve tainted nodes for workloads that really need them.",
                    "Load test before trusting an autoscaler's thresholds.",
                ),
                queries=(
                    "pod keeps getting oomkilled",
                    "how to set cpu and memory requests",
                    "statefulset vs deployment for a database",
                ),
            ),
            Facet(
                key="networking",
                name="Networking and Ingress",
                headings=("Services and DNS", "Ingress and Load Balancing", "Network Policies"),
                terms=("Services", "ClusterIP addresses", "the ingress controller", "CoreDNS", "NetworkPolicies", "LoadBalancer services", "TLS certificates", "a service mesh", "kube-proxy"),
                facts=(
                    "A Service gives a changing set of pods one stable virtual IP address and DNS name inside the cluster.",
                    "CoreDNS resolves names such as my-service.my-namespace.svc.cluster.local to Service addresses.",
                    "An Ingress resource does nothing by itself; an ingress controller such as NGINX or Traefik must be installed to act on it.",
                    "A Service of type LoadBalancer asks the cloud provider for an external load balancer, which gets expensive if every app has one.",
                    "By default all pods can talk to all other pods, and NetworkPolicies are how you restrict that traffic.",
                    "NetworkPolicies only take effect if the cluster's network plugin enforces them.",
                    "cert-manager can request and renew TLS certificates automatically for Ingress hosts.",
                    "kube-proxy programs iptables or IPVS rules on every node so that traffic to a Service reaches a healthy pod.",
                ),
                tips=(
                    "Start with a default-deny NetworkPolicy per namespace.",
                    "Share one ingress controller instead of many load balancers.",
                    "Use fully qualified service names across namespaces.",
                    "Automate certificate renewal from day one.",
                    "Test policies with a throwaway debug pod.",
                ),
                queries=(
                    "service not reachable from another namespace",
                    "how do i expose an app outside the cluster",
                    "block traffic between namespaces",
                ),
            ),
            Facet(
                key="observability",
                name="Observability and Incident Response",
                headings=("Probes and Health Checks", "Logs, Metrics and Alerts", "Rolling Back Safely"),
                terms=("liveness probes", "readiness probes", "CrashLoopBackOff", "Prometheus", "container logs", "cluster events", "rollbacks", "alerting", "runbooks"),
                facts=(
                    "A readiness probe decides whether a pod receives traffic, while a liveness probe decides whether the container should be restarted.",
                    "An aggressive liveness probe can restart a slow but healthy application over and over, making an outage worse.",
                    "CrashLoopBackOff means a container keeps exiting and Kubernetes is waiting longer and longer before restarting it.",
                    "kubectl describe pod shows recent events such as failed scheduling, image pull errors and probe failures.",
                    "kubectl logs with the previous flag prints the output of the last crashed container, which is often where the real error is.",
                    "Prometheus scrapes metrics from pods and nodes, and alert rules should page people only for symptoms users actually feel.",
                    "kubectl rollout undo returns a Deployment to its previous revision in seconds.",
                    "A short runbook for each alert tells the on-call engineer what to check first and when to escalate.",
                ),
                tips=(
                    "Give liveness probes generous timeouts.",
                    "Check the previous container's logs after a crash.",
                    "Alert on user-facing symptoms, not on every metric.",
                    "Write a runbook entry for every page.",
                    "Practise a rollback before you need one.",
                ),
                queries=(
                    "pod stuck in crashloopbackoff",
                    "difference between liveness and readiness probes",
                    "how to roll back a bad deployment",
                ),
            ),
        ),
        palette=((50, 108, 229), (24, 40, 72), (226, 234, 252)),
    ),
    Topic(
        key="renaissance_art",
        name="Renaissance Art",
        phrase="Renaissance art",
        description=(
            "Painting and sculpture from fourteenth-century Florence to the northern masters: the "
            "techniques, the patrons and the artists who changed how Europe saw the world."
        ),
        capsule_titles=("Masters of the Renaissance", "Art and Power in Renaissance Europe"),
        terms=("the Renaissance", "painting", "sculpture", "humanism", "altarpieces", "the artist's workshop", "Florence"),
        facts=(
            "The Renaissance began in Italy in the fourteenth century and spread across Europe over the next two hundred years.",
            "Humanism, the renewed study of classical Greek and Roman texts, encouraged artists to portray people as individuals.",
            "Most Renaissance painters trained for years in a master's workshop, grinding pigments and preparing panels before painting themselves.",
            "Religious altarpieces remained the most common commission, even as portraits and mythological scenes grew in popularity.",
            "Giorgio Vasari's Lives of the Artists, published in 1550, shaped how later generations understood the period.",
            "Many famous works were collaborations, with assistants painting backgrounds and drapery while the master finished faces and hands.",
        ),
        queries=(
            "introduction to renaissance painting",
            "why is the renaissance important in art history",
            "famous renaissance artists overview",
        ),
        facets=(
            Facet(
                key="techniques",
                name="Techniques and Materials",
                headings=("Fresco and Tempera", "Linear Perspective", "Oil Glazes and Sfumato"),
                terms=("fresco", "egg tempera", "linear perspective", "the vanishing point", "sfumato", "chiaroscuro", "oil glazes", "cartoons", "pigments"),
                facts=(
                    "In buon fresco, pigments are painted onto wet lime plaster and become part of the wall as it dries.",
                    "Artists worked on frescoes in daily patches called giornate, and the seams between them can still be seen on close inspection.",
                    "Filippo Brunelleschi is credited with demonstrating linear perspective in Florence around 1415.",
                    "Leon Battista Alberti described linear perspective in his treatise On Painting, with parallel lines meeting at a single vanishing point.",
                    "Egg tempera dries quickly and gives bright, matte colours, but it is hard to blend smoothly.",
                    "Leonardo da Vinci's sfumato uses very thin layers of oil glaze to soften outlines, as seen in the Mona Lisa's smile.",
                    "Chiaroscuro, the strong contrast of light and dark, gives figures a convincing sense of volume.",
                    "Full-size drawings called cartoons were transferred to walls by pricking holes along the lines and dusting them with charcoal.",
                ),
                tips=(
                    "Look for the seams between daily fresco patches.",
                    "Find the vanishing point by extending floor tiles and beams.",
                    "Compare tempera and oil panels side by side in a gallery.",
                    "Notice how sfumato softens the corners of eyes and mouths.",
                    "Use a magnifying app on high-resolution images of cracks and glazes.",
                ),
                queries=(
                    "how did renaissance painters do frescoes",
                    "who invented perspective drawing",
                    "what is sfumato technique",
                ),
            ),
            Facet(
                key="patronage",
                name="Patrons and Florence",
                headings=("The Medici and Their Artists", "Guilds and Commissions", "Rome and the Papacy"),
                terms=("the Medici", "patrons", "commissions", "the guilds", "contracts", "the Sistine Chapel", "Michelangelo", "Botticelli", "Pope Julius II"),
                facts=(
                    "The Medici banking family paid for churches, libraries and paintings in Florence, using art to display their power.",
                    "Lorenzo de' Medici took the teenage Michelangelo into his household and gave him access to his collection of ancient sculpture.",
                    "Contracts for paintings often specified the subject, the deadline and even how much expensive ultramarine blue should be used.",
                    "Guilds such as the wool merchants' guild funded public projects, including the doors of the Florence Baptistery.",
                    "Sandro Botticelli painted The Birth of Venus for a member of the Medici circle, probably in the 1480s.",
                    "Pope Julius II commissioned Michelangelo to paint the ceiling of the Sistine Chapel, which took him four years.",
                    "Raphael decorated the papal apartments in the Vatican, including the School of Athens.",
                    "Competition between patrons for the best artists drove up fees and raised the social standing of painters.",
                ),
                tips=(
                    "Look for donor portraits kneeling at the edges of altarpieces.",
                    "Spot family coats of arms hidden in the decoration.",
                    "Read surviving contracts to see what patrons cared about.",
                    "Map commissions onto a city plan of Florence.",
                    "Compare what artists earned with what patrons spent on buildings.",
                ),
                queries=(
                    "why did the medici pay for so much art",
                    "who paid michelangelo to paint the sistine chapel",
                    "how were renaissance paintings commissioned",
                ),
            ),
            Facet(
                key="northern",
                name="Northern Renaissance",
                headings=("Jan van Eyck and Oil Paint", "Albrecht Dürer and Printmaking", "Bruegel's Everyday Scenes"),
                terms=("Jan van Eyck", "Albrecht Dürer", "Pieter Bruegel", "oil painting", "woodcuts", "engraving", "Flemish painting", "the Ghent Altarpiece", "genre painting"),
                facts=(
                    "Jan van Eyck's mastery of oil paint allowed astonishing detail, from reflections in armour to individual hairs.",
                    "The Ghent Altarpiece, completed in 1432, is one of the most studied and most often stolen works of art in history.",
                    "Albrecht Dürer travelled to Italy twice and brought ideas about proportion and perspective back to Nuremberg.",
                    "Dürer's woodcuts and engravings were printed in large numbers, making him famous across Europe in his own lifetime.",
                    "Pieter Bruegel the Elder painted peasants, seasons and village festivals, helping to establish genre painting.",
                    "Flemish painters often hid symbolic meaning in everyday objects, such as a single candle or a small dog.",
                    "Northern artists generally built forms through careful observation of surface detail rather than idealised anatomy.",
                    "Hans Holbein the Younger became court painter to Henry VIII and recorded the faces of the Tudor court.",
                ),
                tips=(
                    "Zoom in on reflections in van Eyck's metal and glass.",
                    "Compare a Dürer woodcut with one of his engravings.",
                    "Count the activities in a Bruegel village scene.",
                    "Look for symbolic objects on windowsills and tables.",
                    "Visit print rooms, which often show works not on permanent display.",
                ),
                queries=(
                    "what made jan van eyck paintings so detailed",
                    "durer prints woodcut or engraving",
                    "bruegel paintings of peasants meaning",
                ),
            ),
        ),
        palette=((150, 40, 40), (200, 160, 70), (245, 236, 214)),
    ),
    Topic(
        key="marathon_training",
        name="Marathon Training",
        phrase="marathon training",
        description=(
            "Getting to the start line healthy and the finish line strong: structured training "
            "plans, fuelling on the run and staying injury-free."
        ),
        capsule_titles=("Couch to Marathon", "Run Your First 42K"),
        terms=("the marathon", "running", "pacing", "weekly volume", "race day", "the training block", "the finish line"),
        facts=(
            "A marathon is 42.195 kilometres long, a distance standardised after the 1908 London Olympics.",
            "Most first-time marathoners follow a training plan of sixteen to twenty weeks.",
            "Running most of your weekly mileage at an easy, conversational pace builds endurance while keeping injury risk low.",
            "Consistency over months matters far more than any single heroic workout.",
            "Race day goes better when every piece of kit and every gel has been tested during training.",
            "Sleep is when the body adapts to training, so cutting it short undermines the hard work.",
        ),
        queries=(
            "training for my first marathon",
            "how to prepare for a marathon",
            "marathon plan for beginners",
        ),
        facets=(
            Facet(
                key="plan",
                name="Training Plans and Long Runs",
                headings=("Structuring the Training Week", "The Long Run", "Speed Work and Tempo Runs"),
                terms=("the long run", "tempo runs", "intervals", "easy runs", "weekly mileage", "the 10 percent rule", "cutback weeks", "marathon pace", "heart rate zones"),
                facts=(
                    "The long run is the backbone of marathon training and usually peaks at around 30 to 35 kilometres three weeks before the race.",
                    "The 10 percent rule suggests increasing weekly mileage by no more than about ten percent from one week to the next.",
                    "Every third or fourth week, a cutback week with reduced mileage gives the body time to absorb training.",
                    "A tempo run is sustained at a comfortably hard effort, roughly the pace you could hold for an hour.",
                    "Interval sessions such as six times 800 metres improve running economy and make race pace feel easier.",
                    "Many plans include a few kilometres at goal marathon pace towards the end of long runs.",
                    "Training by heart rate zones keeps easy days genuinely easy, which beginners often find surprisingly slow.",
                    "Two hard sessions a week are enough for most amateur runners; the rest should be easy running or rest.",
                ),
                tips=(
                    "Schedule the long run on the day with the most free time.",
                    "Plan a cutback week every third or fourth week.",
                    "Keep easy runs at a pace where you can talk.",
                    "Limit yourself to two hard sessions a week.",
                    "Write the whole plan down before week one.",
                ),
                queries=(
                    "how long should my longest run be before a marathon",
                    "how fast should easy runs be",
                    "how many days a week to run for marathon",
                ),
            ),
            Facet(
                key="fueling",
                name="Fuelling and Hydration",
                headings=("Carbohydrates and Energy", "Fuelling During the Race", "Hydration and Electrolytes"),
                terms=("carbohydrates", "energy gels", "glycogen", "carb loading", "electrolytes", "sodium", "hitting the wall", "hydration", "gut training"),
                facts=(
                    "The body stores only enough glycogen for about 90 to 120 minutes of hard running, which is why marathoners take on carbohydrate during the race.",
                    "Hitting the wall describes the sudden fatigue when glycogen runs low, often somewhere after 30 kilometres.",
                    "Many runners aim for 30 to 60 grams of carbohydrate per hour during the race, typically from gels or sports drinks.",
                    "Carb loading in the two or three days before the race tops up glycogen stores; it does not mean one enormous pasta dinner.",
                    "The gut can be trained: practising race-day fuelling on long runs reduces the risk of stomach problems.",
                    "Sodium lost in sweat varies widely between people, and heavy sweaters may need electrolyte drinks or tablets.",
                    "Drinking to thirst is a sensible default, since drinking far more than you sweat can cause dangerous hyponatremia.",
                    "A familiar, low-fibre breakfast about three hours before the start gives time for digestion.",
                ),
                tips=(
                    "Practise with the exact gels you will use on race day.",
                    "Take the first gel before you feel hungry.",
                    "Weigh yourself before and after a long run to estimate sweat loss.",
                    "Eat a familiar breakfast three hours before the start.",
                    "Add salt or electrolyte tablets on hot days.",
                ),
                queries=(
                    "how many gels during a marathon",
                    "what to eat the night before a marathon",
                    "how to avoid hitting the wall",
                ),
            ),
            Facet(
                key="recovery",
                name="Injury Prevention and Recovery",
                headings=("Common Running Injuries", "Strength and Mobility", "Tapering and Recovery"),
                terms=("shin splints", "runner's knee", "plantar fasciitis", "the IT band", "strength training", "the taper", "the foam roller", "rest days", "overtraining"),
                facts=(
                    "Most running injuries are overuse injuries caused by increasing load faster than tissues can adapt.",
                    "Shin splints, runner's knee and plantar fasciitis are among the most common complaints in marathon training.",
                    "Two short strength sessions a week, focusing on hips, glutes and calves, reduce injury risk for many runners.",
                    "A taper of two to three weeks, cutting volume while keeping some intensity, lets the body arrive fresh on race day.",
                    "Pain that changes your running form or gets worse during a run is a signal to stop, not to push through.",
                    "Overtraining shows up as persistent fatigue, poor sleep, a raised resting heart rate and falling performance.",
                    "Replacing running shoes every 600 to 800 kilometres is a common rule of thumb, although it varies with weight and surface.",
                    "Easy walking and gentle jogging in the week after a marathon speed recovery more than complete rest.",
                ),
                tips=(
                    "Do two short strength sessions every week.",
                    "Log shoe mileage and replace worn pairs.",
                    "Stop a run if pain changes your stride.",
                    "Take at least one full rest day a week.",
                    "Walk and jog gently in the week after the race.",
                ),
                queries=(
                    "knee hurts after long runs",
                    "how long should a marathon taper be",
                    "exercises to prevent running injuries",
                ),
            ),
        ),
        palette=((230, 90, 40), (40, 40, 40), (250, 235, 225)),
    ),
    Topic(
        key="urban_beekeeping",
        name="Urban Beekeeping",
        phrase="urban beekeeping",
        description=(
            "Keeping honey bees on rooftops, balconies and small gardens: choosing a site, keeping "
            "colonies healthy and harvesting honey responsibly."
        ),
        capsule_titles=("Bees on the Rooftop", "The City Beekeeper"),
        terms=("honey bees", "the colony", "the beekeeper", "the apiary", "pollinators", "forage", "worker bees"),
        facts=(
            "A healthy honey bee colony can contain 40,000 to 60,000 bees at the height of summer.",
            "Each colony has a single queen, thousands of female worker bees and, in summer, a few hundred male drones.",
            "City bees often do well because parks, gardens and street trees flower over a long season.",
            "Honey bees forage up to about three kilometres from the hive, and further when food is scarce.",
            "Many cities require beekeepers to register their hives and to keep them a set distance from property lines.",
            "Joining a local beekeeping association is the quickest way to find a mentor and affordable equipment.",
        ),
        queries=(
            "how to start keeping bees in the city",
            "urban beekeeping for beginners",
            "is it hard to keep honey bees",
        ),
        facets=(
            Facet(
                key="hive_setup",
                name="Hive Setup and Siting",
                headings=("Choosing a Site", "The Langstroth Hive", "Being a Good Neighbour"),
                terms=("the Langstroth hive", "the brood box", "honey supers", "frames", "the flight path", "rooftop sites", "a water source", "the smoker", "the bee suit"),
                facts=(
                    "The Langstroth hive uses removable frames spaced by the bee space of about eight millimetres, which bees leave open rather than filling with comb.",
                    "The lower brood box holds the queen's eggs and larvae, while honey supers are added above when the nectar flow starts.",
                    "A hive entrance facing away from paths, or a tall fence in front of it, lifts the bees' flight path above people's heads.",
                    "Rooftop hives need to be secured against wind and placed where the beekeeper can work safely.",
                    "Bees need a reliable water source, and providing one stops them from visiting neighbours' pools and taps.",
                    "Cool smoke from a smoker masks alarm pheromones and keeps the colony calm during inspections.",
                    "Starting with two hives lets a beginner compare colonies and move resources between them if one struggles.",
                    "Gentle, locally adapted bees are a better choice for cities than strains known for defensiveness.",
                ),
                tips=(
                    "Face the entrance away from paths and doors.",
                    "Put a shallow water dish with stones near the hive.",
                    "Strap rooftop hives down against wind.",
                    "Tell your neighbours before the bees arrive.",
                    "Start with two colonies rather than one.",
                ),
                queries=(
                    "can i keep bees on a balcony",
                    "where should i put a beehive in a small garden",
                    "stop bees bothering the neighbours",
                ),
            ),
            Facet(
                key="colony_health",
                name="Colony Health",
                headings=("Varroa Mites", "Inspecting the Brood", "Swarming"),
                terms=("varroa mites", "mite counts", "the sugar roll", "the brood pattern", "queen cells", "swarming", "oxalic acid", "American foulbrood", "nosema"),
                facts=(
                    "The varroa mite feeds on bees and spreads viruses, and it is the biggest single cause of colony losses in many countries.",
                    "A sugar roll or alcohol wash on about 300 bees gives a mite count that tells you whether treatment is needed.",
                    "Oxalic acid treatments are most effective in winter, when the colony has little or no capped brood for mites to hide in.",
                    "A solid brood pattern with few gaps is a sign of a healthy, well-mated queen.",
                    "Queen cells along the bottom edges of frames in spring often mean the colony is preparing to swarm.",
                    "Swarming is how colonies reproduce: the old queen leaves with roughly half the bees to find a new home.",
                    "American foulbrood is a serious bacterial disease that must be reported to the authorities in many places.",
                    "Regular inspections every seven to ten days in spring and early summer help catch swarm preparations early.",
                ),
                tips=(
                    "Count mites at least four times a year.",
                    "Inspect every seven to ten days in spring.",
                    "Check the bottom bars of frames for queen cells.",
                    "Treat for varroa when the colony is broodless.",
                    "Learn the signs of foulbrood and who to report it to.",
                ),
                queries=(
                    "how to check bees for mites",
                    "signs my hive is going to swarm",
                    "when to treat for varroa",
                ),
            ),
            Facet(
                key="honey",
                name="Harvesting Honey",
                headings=("When to Harvest", "Extracting and Bottling", "Leaving Enough for Winter"),
                terms=("capped honey", "the extractor", "the uncapping knife", "moisture content", "the refractometer", "beeswax", "winter stores", "the nectar flow", "crystallisation"),
                facts=(
                    "Bees cap cells with wax once the honey's moisture content has fallen below about 18 to 20 percent.",
                    "Harvesting uncapped honey risks fermentation, which is why beekeepers check moisture with a refractometer.",
                    "A centrifugal extractor spins uncapped frames so that honey is flung out while the comb stays intact for reuse.",
                    "City honey often has a complex flavour because bees forage on many different ornamental plants.",
                    "A colony in a temperate climate typically needs 15 to 25 kilograms of honey to survive the winter.",
                    "Beeswax cappings left over from extraction can be melted down for candles, polish or cosmetics.",
                    "Straining honey through a fine mesh removes wax and bee parts without filtering out the pollen.",
                    "Honey naturally crystallises over time, and gentle warming returns it to liquid without harming it.",
                ),
                tips=(
                    "Only take frames that are at least three-quarters capped.",
                    "Check moisture with a refractometer before bottling.",
                    "Borrow an extractor from your association for small harvests.",
                    "Leave enough stores for winter before taking any surplus.",
                    "Label jars with the harvest month and location.",
                ),
                queries=(
                    "how do i know when honey is ready to harvest",
                    "do i need an extractor for a few frames",
                    "how much honey to leave for the bees over winter",
                ),
            ),
        ),
        palette=((240, 180, 30), (60, 45, 20), (252, 246, 220)),
    ),
    Topic(
        key="astronomy_beginners",
        name="Astronomy for Beginners",
        phrase="beginner astronomy",
        description=(
            "Getting started with backyard astronomy: choosing equipment, finding your way around "
            "the sky and observing the Moon, planets and deep-sky objects."
        ),
        capsule_titles=("Your First Night Under the Stars", "Backyard Astronomy"),
        terms=("the night sky", "stargazing", "light pollution", "the observing session", "dark adaptation", "dark sites", "the observing log"),
        facts=(
            "Your eyes need 20 to 30 minutes in darkness to adapt fully, and a single glance at a bright phone screen resets the process.",
            "A red torch preserves night vision while you read charts or adjust equipment.",
            "Light pollution washes out faint objects, so even a short drive to a darker site can transform what you see.",
            "The Bortle scale rates sky darkness from 1, an excellent dark site, to 9, an inner-city sky.",
            "Many amateur astronomers keep an observing log with the date, conditions, equipment and a description or sketch of each object.",
            "Clear nights after a weather front passes often have the most transparent skies.",
        ),
        queries=(
            "getting started with stargazing",
            "astronomy hobby for beginners",
            "what can i see in the night sky from my garden",
        ),
        facets=(
            Facet(
                key="equipment",
                name="Telescopes and Equipment",
                headings=("Start with Binoculars", "Choosing a Telescope", "Eyepieces and Magnification"),
                terms=("binoculars", "refractors", "the Dobsonian", "aperture", "eyepieces", "magnification", "focal length", "the finder scope", "equatorial mounts"),
                facts=(
                    "A pair of 7x50 or 10x50 binoculars is a cheap and forgiving first instrument that shows craters, star clusters and Jupiter's moons.",
                    "Aperture, the diameter of the main lens or mirror, determines how much light a telescope gathers and how much detail it can show.",
                    "A Dobsonian is a reflector on a simple rocker box mount and offers the most aperture for the money.",
                    "Magnification equals the telescope's focal length divided by the eyepiece's focal length.",
                    "Useful magnification rarely exceeds about twice the aperture in millimetres, and the atmosphere often limits it further.",
                    "Refractors need little maintenance and cool down quickly, which makes them popular for grab-and-go observing.",
                    "A finder scope or red-dot finder must be aligned with the main telescope in daylight before it is useful at night.",
                    "Equatorial mounts track the sky's rotation with a single motion once they are polar aligned.",
                ),
                tips=(
                    "Start with binoculars before buying a telescope.",
                    "Align the finder on a distant treetop in daylight.",
                    "Let the telescope cool outside for half an hour.",
                    "Use your lowest-power eyepiece to find objects.",
                    "Buy aperture rather than advertised magnification.",
                ),
                queries=(
                    "best first telescope for a beginner",
                    "what do the numbers on binoculars mean",
                    "how much zoom do i need to see saturn",
                ),
            ),
            Facet(
                key="navigation",
                name="Finding Your Way Around the Sky",
                headings=("Constellations and Asterisms", "Star Hopping", "Planispheres and Apps"),
                terms=("constellations", "asterisms", "star hopping", "the Big Dipper", "Polaris", "Orion", "the planisphere", "the celestial sphere", "stellar magnitude"),
                facts=(
                    "The sky is divided into 88 officially recognised constellations, but beginners usually start with bright patterns called asterisms.",
                    "The two pointer stars at the end of the Big Dipper lead almost directly to Polaris, the North Star.",
                    "Orion's Belt points down towards Sirius, the brightest star in the night sky, and up towards Aldebaran.",
                    "Star hopping means moving from a bright star you know to fainter targets using short, recognisable patterns.",
                    "A planisphere is a rotating star chart that shows which constellations are visible at any date and time.",
                    "The magnitude scale runs backwards: lower numbers are brighter, and the faintest stars visible from a dark site are around magnitude 6.",
                    "Stars rise about four minutes earlier each night, which is why the constellations drift across the seasons.",
                    "Holding your fist at arm's length covers about ten degrees of sky, a handy unit for following chart directions.",
                ),
                tips=(
                    "Learn one new constellation each clear night.",
                    "Set the planisphere to the current date and time before going out.",
                    "Use your fist at arm's length to measure distances.",
                    "Dim your phone and switch star apps to night mode.",
                    "Sketch star patterns to fix them in memory.",
                ),
                queries=(
                    "how to find the north star",
                    "easy constellations to learn first",
                    "best app to identify stars",
                ),
            ),
            Facet(
                key="targets",
                name="Observing the Moon, Planets and Deep Sky",
                headings=("The Moon", "The Planets", "Clusters, Nebulae and Galaxies"),
                terms=("the Moon", "the terminator", "Jupiter", "Saturn's rings", "opposition", "the Orion Nebula", "the Andromeda Galaxy", "the Pleiades", "the Messier catalogue"),
                facts=(
                    "The Moon is most rewarding near the terminator, the line between day and night, where shadows reveal craters and mountains.",
                    "A full Moon is the worst time to observe lunar detail and also washes out faint deep-sky objects.",
                    "Even a small telescope shows Saturn's rings and the four large moons of Jupiter discovered by Galileo.",
                    "Planets look biggest and brightest around opposition, when Earth passes between them and the Sun.",
                    "The Orion Nebula is a star-forming cloud visible to the naked eye as a fuzzy patch in Orion's Sword.",
                    "The Andromeda Galaxy, about 2.5 million light-years away, is the most distant object most people can see without optical aid.",
                    "The Pleiades is a young open star cluster that looks best in binoculars or at very low magnification.",
                    "Charles Messier compiled his catalogue of 110 fuzzy objects so that comet hunters would not mistake them for comets.",
                ),
                tips=(
                    "Observe the Moon a few days either side of first quarter.",
                    "Check when planets reach opposition this year.",
                    "Use averted vision for faint galaxies.",
                    "Tick off Messier objects as you find them.",
                    "Plan deep-sky nights around the new Moon.",
                ),
                queries=(
                    "when is the best time to look at the moon through a telescope",
                    "can you see saturns rings with a small telescope",
                    "how to find the andromeda galaxy",
                ),
            ),
        ),
        palette=((15, 20, 50), (90, 80, 160), (255, 240, 180)),
    ),
    Topic(
        key="gdpr_compliance",
        name="GDPR Compliance",
        phrase="GDPR compliance",
        description=(
            "A practical tour of the EU General Data Protection Regulation for product and data "
            "teams: lawful bases, data subject rights and handling personal data breaches."
        ),
        capsule_titles=("GDPR for Product Teams", "Privacy by Design in Practice"),
        terms=("the GDPR", "personal data", "the controller", "processors", "data protection", "the supervisory authority", "the privacy notice"),
        facts=(
            "The General Data Protection Regulation has applied across the European Union since 25 May 2018.",
            "Personal data is any information relating to an identified or identifiable natural person, including online identifiers such as IP addresses.",
            "A controller decides why and how personal data is processed, while a processor acts on the controller's documented instructions.",
            "Serious infringements can lead to fines of up to 20 million euros or 4 percent of worldwide annual turnover, whichever is higher.",
            "Data protection by design and by default means building privacy into systems from the start rather than bolting it on.",
            "Organisations must keep records of processing activities describing what data they hold, why, and for how long.",
        ),
        queries=(
            "gdpr basics for a software team",
            "what does gdpr require from a company",
            "data protection rules overview europe",
        ),
        facets=(
            Facet(
                key="lawful_basis",
                name="Lawful Basis and Consent",
                headings=("The Six Lawful Bases", "Valid Consent", "Legitimate Interests"),
                terms=("the lawful basis", "consent", "legitimate interests", "performance of a contract", "legal obligations", "withdrawal of consent", "the cookie banner", "purpose limitation", "data minimisation"),
                facts=(
                    "Article 6 lists six lawful bases for processing: consent, contract, legal obligation, vital interests, public task and legitimate interests.",
                    "Valid consent must be freely given, specific, informed and unambiguous, and pre-ticked boxes do not count.",
                    "People must be able to withdraw consent as easily as they gave it, and processing based on consent must stop when they do.",
                    "Consent is often not the most appropriate basis when there is a clear imbalance of power, such as between employer and employee.",
                    "Relying on legitimate interests requires a balancing test that weighs the organisation's interests against the individual's rights.",
                    "Purpose limitation means data collected for one purpose should not be reused for an incompatible one.",
                    "Data minimisation asks teams to collect only the personal data they actually need for the stated purpose.",
                    "Controllers must be able to demonstrate consent, so they need to record who consented, when, and to which version of the notice.",
                ),
                tips=(
                    "Record the notice version with every consent.",
                    "Make withdrawing consent a one-click action.",
                    "Document a balancing test for each legitimate interest.",
                    "Delete fields nobody can justify collecting.",
                    "Never pre-tick consent boxes.",
                ),
                queries=(
                    "do we need consent for analytics cookies",
                    "what counts as valid consent under gdpr",
                    "when can we use legitimate interest instead of consent",
                ),
            ),
            Facet(
                key="rights",
                name="Data Subject Rights",
                headings=("Access Requests", "The Right to Erasure", "Portability and Objection"),
                terms=("data subjects", "subject access requests", "the right to erasure", "rectification", "data portability", "the right to object", "identity verification", "the one-month deadline", "restriction of processing"),
                facts=(
                    "Individuals can ask for a copy of their personal data through a subject access request, which is normally free of charge.",
                    "Organisations must respond to data subject requests without undue delay and at the latest within one month of receipt.",
                    "The one-month deadline can be extended by two further months for complex or numerous requests, provided the person is told why.",
                    "The right to erasure, often called the right to be forgotten, is not absolute and can be limited by legal retention obligations.",
                    "Erasure must reach backups and processors too, or there must be a documented plan for how deleted data stays out of use.",
                    "Data portability lets people receive data they provided in a structured, commonly used and machine-readable format.",
                    "Reasonable identity verification protects against disclosing someone's data to an impostor.",
                    "A person can object to processing based on legitimate interests, and to direct marketing at any time.",
                ),
                tips=(
                    "Log the date every request is received.",
                    "Verify identity without asking for more data than necessary.",
                    "Map every system that holds personal data before the first request arrives.",
                    "Keep an audit trail of what was deleted and when.",
                    "Tell processors about erasure requests that affect them.",
                ),
                queries=(
                    "how long do we have to answer a data access request",
                    "does deleting a user have to include backups",
                    "can someone refuse to be in our marketing emails",
                ),
            ),
            Facet(
                key="breaches",
                name="Breaches and Security",
                headings=("What Counts as a Breach", "The 72-Hour Rule", "Impact Assessments"),
                terms=("personal data breaches", "the 72-hour deadline", "breach notification", "encryption", "pseudonymisation", "the DPIA", "risk assessment", "the incident log", "the data protection officer"),
                facts=(
                    "A personal data breach is any security incident leading to the accidental or unlawful destruction, loss, alteration or disclosure of personal data.",
                    "Controllers must notify the supervisory authority within 72 hours of becoming aware of a breach unless it is unlikely to result in a risk to people.",
                    "When a breach is likely to result in a high risk, the affected individuals must also be told without undue delay.",
                    "Every breach must be documented internally, including ones that did not need to be reported.",
                    "Encryption and pseudonymisation are explicitly mentioned in the regulation as appropriate security measures.",
                    "A data protection impact assessment is required before processing that is likely to result in a high risk, such as large-scale profiling.",
                    "Many organisations must appoint a data protection officer who reports to the highest level of management.",
                    "Processors must inform the controller of a breach without undue delay so that the controller can meet its own deadline.",
                ),
                tips=(
                    "Keep an incident log even for minor breaches.",
                    "Rehearse the 72-hour notification process.",
                    "Encrypt backups and laptops by default.",
                    "Run a DPIA before launching profiling features.",
                    "Put breach duties into every processor contract.",
                ),
                queries=(
                    "how quickly must a data breach be reported",
                    "when is a dpia required",
                    "do we have to tell customers about a breach",
                ),
            ),
        ),
        palette=((0, 51, 153), (255, 204, 0), (235, 240, 250)),
    ),
    Topic(
        key="home_solar",
        name="Home Solar Power",
        phrase="home solar power",
        description=(
            "Planning a home solar installation: sizing panels for your roof, choosing inverters "
            "and batteries, and understanding grid export and payback."
        ),
        capsule_titles=("Powering Your Home with the Sun", "Solar at Home"),
        terms=("solar power", "photovoltaics", "the electricity bill", "kilowatt-hours", "the installer", "the solar installation", "renewable energy"),
        facts=(
            "Photovoltaic panels turn sunlight directly into direct-current electricity using layers of silicon.",
            "Household electricity use is measured in kilowatt-hours, and your past bills are the best starting point for sizing a system.",
            "A solar system's output varies with season, weather and time of day, so planning is done on annual totals.",
            "Modern panels typically come with performance warranties guaranteeing around 80 to 90 percent of original output after 25 years.",
            "Getting at least three quotes from accredited installers is the usual advice before committing.",
            "Using power while the sun shines, for example running the washing machine at midday, raises the value of every kilowatt-hour generated.",
        ),
        queries=(
            "is solar worth it for my house",
            "home solar system explained",
            "what to know before installing solar panels",
        ),
        facets=(
            Facet(
                key="panels",
                name="Panels and Sizing",
                headings=("How Much Roof Do You Need", "Orientation, Tilt and Shading", "Panel Types"),
                terms=("solar panels", "kilowatts peak", "monocrystalline cells", "roof orientation", "the tilt angle", "shading", "irradiance", "panel efficiency", "the roof survey"),
                facts=(
                    "System size is quoted in kilowatts peak, the output under standard test conditions rather than on a typical day.",
                    "In central Europe, each kilowatt peak of panels generates roughly 900 to 1,100 kilowatt-hours a year.",
                    "South-facing roofs are ideal in the northern hemisphere, but east-west arrays produce a flatter curve that better matches many households' use.",
                    "A tilt angle close to the site's latitude maximises annual yield, although a few degrees either way makes little difference.",
                    "Even partial shading from a chimney or tree can cut the output of a whole string of panels.",
                    "Monocrystalline panels are the most common choice for homes today, with efficiencies above 20 percent.",
                    "A typical residential panel now produces 400 watts or more and measures about 1.7 by 1.1 metres.",
                    "A roof survey checks the structure, the remaining life of the roof covering and the available area before panels are fitted.",
                ),
                tips=(
                    "Collect twelve months of electricity bills first.",
                    "Photograph the roof at different times of day to spot shading.",
                    "Replace an old roof covering before fitting panels.",
                    "Compare quotes on cost per kilowatt peak.",
                    "Check the panel performance warranty, not just the product warranty.",
                ),
                queries=(
                    "how many solar panels do i need for my house",
                    "is an east west roof ok for solar",
                    "does shade from a tree ruin solar panels",
                ),
            ),
            Facet(
                key="storage",
                name="Inverters and Batteries",
                headings=("String Inverters and Microinverters", "Home Batteries", "Backup Power"),
                terms=("the inverter", "microinverters", "power optimisers", "the home battery", "lithium iron phosphate", "depth of discharge", "round-trip efficiency", "backup power", "battery capacity"),
                facts=(
                    "An inverter converts the panels' direct current into alternating current that the home and the grid can use.",
                    "Microinverters or power optimisers on each panel limit the losses caused by shading or mismatched panels.",
                    "String inverters usually need replacing once during the life of a solar system, often after 10 to 15 years.",
                    "A home battery stores surplus daytime generation for use in the evening, raising the share of solar power you use yourself.",
                    "Lithium iron phosphate batteries are popular for homes because they are stable and tolerate many charge cycles.",
                    "Round-trip efficiency describes how much of the energy put into a battery comes back out, typically around 90 percent.",
                    "Many grid-connected systems shut down during a power cut for safety unless they have a dedicated backup circuit.",
                    "Battery capacity is usually chosen to cover evening and night-time use rather than several days of autonomy.",
                ),
                tips=(
                    "Budget for one inverter replacement over the system's life.",
                    "Size the battery to your evening use.",
                    "Ask explicitly whether the system works during a power cut.",
                    "Choose optimisers if part of the roof is shaded.",
                    "Check the battery warranty in cycles as well as years.",
                ),
                queries=(
                    "is a home battery worth it with solar",
                    "do solar panels work during a power cut",
                    "microinverters vs string inverter",
                ),
            ),
            Facet(
                key="economics",
                name="Grid Export and Payback",
                headings=("Selling Power to the Grid", "Calculating Payback", "Incentives and Permits"),
                terms=("feed-in tariffs", "net metering", "the export rate", "self-consumption", "the payback period", "the grid connection", "the smart meter", "planning permission", "time-of-use tariffs"),
                facts=(
                    "Net metering credits exported electricity against imported electricity, while export tariffs pay a separate, usually lower, rate.",
                    "When export rates are low, self-consumption becomes the main driver of a system's financial return.",
                    "Payback periods for home solar commonly range from six to twelve years, depending on prices, tariffs and how much power is used on site.",
                    "A smart meter is usually required to measure and pay for exported electricity.",
                    "The grid operator may need to approve larger systems before connection.",
                    "Some regions offer tax credits, reduced VAT or grants that shorten the payback period considerably.",
                    "Time-of-use tariffs can make a battery more valuable by letting you avoid expensive peak-hour electricity.",
                    "Planning permission is often not needed for panels on a house roof, but listed buildings and conservation areas are exceptions.",
                ),
                tips=(
                    "Compare export tariffs from several suppliers.",
                    "Run appliances at midday to raise self-consumption.",
                    "Check for local grants before signing a quote.",
                    "Ask the installer to handle the grid notification.",
                    "Confirm whether your building needs planning permission.",
                ),
                queries=(
                    "how long until solar panels pay for themselves",
                    "can i sell extra electricity back to the grid",
                    "do i need permission to put panels on my roof",
                ),
            ),
        ),
        palette=((255, 170, 0), (30, 60, 110), (240, 248, 255)),
    ),
    Topic(
        key="chess_openings",
        name="Chess Openings",
        phrase="chess openings",
        description=(
            "An opening repertoire for improving players: the classical open games, the fighting "
            "Sicilian Defence and the strategic queen's pawn openings."
        ),
        capsule_titles=("Build Your Opening Repertoire", "Chess Openings Explained"),
        terms=("opening traps", "the opening repertoire", "centre control", "piece development", "castling", "pawn structure", "opening theory"),
        facts=(
            "Good opening play rests on three ideas: control the centre, develop pieces quickly and get the king to safety by castling.",
            "Moving the same piece twice in the opening without a good reason usually hands the opponent extra time.",
            "Understanding the typical plans and pawn structures of an opening is more valuable than memorising long lines.",
            "Most strong players build a small repertoire with one answer to each of White's main first moves.",
            "Opening names often come from players or places, such as the Ruy López, named after a sixteenth-century Spanish priest.",
            "Reviewing your own games to see where you left your preparation is the fastest way to improve an opening repertoire.",
            "Richard Réti and Aron Nimzowitsch argued that the centre can be controlled from a distance rather than occupied with pawns.",
        ),
        queries=(
            "which chess openings should i learn first",
            "building a chess opening repertoire",
            "chess opening principles for improving players",
        ),
        facets=(
            Facet(
                key="open_games",
                name="Open Games",
                headings=("The Italian Game", "The Ruy López", "Gambits in the Open Games"),
                terms=("1.e4 e5", "the Italian Game", "the Ruy López", "the Giuoco Piano", "the King's Gambit", "the Evans Gambit", "the Berlin Defence", "the Fried Liver Attack", "the weak f7 square"),
                facts=(
                    "After 1.e4 e5 2.Nf3 Nc6, the move 3.Bc4 starts the Italian Game and 3.Bb5 the Ruy López.",
                    "The Italian Game aims the bishop at f7, the weakest square in Black's camp at the start of the game.",
                    "The Ruy López puts indirect pressure on the e5 pawn by attacking the knight that defends it.",
                    "The Berlin Defence became famous when Vladimir Kramnik used it against Garry Kasparov in their 2000 world championship match.",
                    "In the King's Gambit White offers the f-pawn on move two to open lines against Black's king.",
                    "The Evans Gambit sacrifices a pawn on b4 to gain time for a rapid attack in the centre.",
                    "The Fried Liver Attack punishes an early mistake in the Two Knights Defence with a knight sacrifice on f7.",
                    "In many open games the side that completes development and castles first gets the initiative.",
                ),
                tips=(
                    "Learn the ideas behind 3.Bc4 and 3.Bb5 before memorising lines.",
                    "Check every move for threats against f7 and f2.",
                    "Castle early in the open games.",
                    "Play through classic gambit games from the nineteenth century.",
                    "Prepare one reply to the King's Gambit.",
                ),
                queries=(
                    "italian game or ruy lopez for beginners",
                    "how to defend against the fried liver",
                    "is the kings gambit any good",
                ),
            ),
            Facet(
                key="sicilian",
                name="Sicilian Defence",
                headings=("Why Play the Sicilian", "The Najdorf and the Dragon", "Anti-Sicilians"),
                terms=("the Sicilian Defence", "1.e4 c5", "the Najdorf", "the Dragon Variation", "the Open Sicilian", "the Alapin", "the Yugoslav Attack", "asymmetry", "the d5 break"),
                facts=(
                    "The Sicilian Defence, 1.e4 c5, creates an asymmetrical position in which Black fights for the centre from the side.",
                    "In the Open Sicilian White plays d4 and exchanges it for Black's c-pawn, gaining space and quick development.",
                    "The Najdorf Variation, beginning 5...a6, was a favourite of both Bobby Fischer and Garry Kasparov.",
                    "In the Dragon Black fianchettoes the bishop on g7, and White often answers with the sharp Yugoslav Attack and opposite-side castling.",
                    "The Alapin, 2.c3, is a popular anti-Sicilian that prepares d4 while avoiding the main theoretical battles.",
                    "Black's typical freeing move in many Sicilians is the d5 break, which often equalises if it can be achieved safely.",
                    "Because Black keeps an extra central pawn after the exchange on d4, Sicilian endgames often favour Black.",
                    "The Sicilian is the most common reply to 1.e4 at master level.",
                ),
                tips=(
                    "Pick one Sicilian variation and stay with it for a season.",
                    "Prepare a plan against the Alapin and other anti-Sicilians.",
                    "Study model games rather than engine lines.",
                    "Look for the d5 break in every Sicilian middlegame.",
                    "Expect opposite-side castling and race accordingly.",
                ),
                queries=(
                    "should a beginner play the sicilian",
                    "how to play against the alapin",
                    "najdorf vs dragon which is easier",
                ),
            ),
            Facet(
                key="queens_pawn",
                name="Queen's Pawn Openings",
                headings=("The Queen's Gambit", "The Nimzo-Indian", "The Grünfeld and the King's Indian"),
                terms=("1.d4", "the Queen's Gambit", "the Queen's Gambit Declined", "the Slav Defence", "the Nimzo-Indian", "the Grünfeld", "the King's Indian Defence", "the London System", "the isolated queen's pawn"),
                facts=(
                    "In the Queen's Gambit, 1.d4 d5 2.c4, the c-pawn is not a true sacrifice, because Black usually cannot hold on to it.",
                    "The Queen's Gambit Declined is one of the oldest and most solid defences, built on the pawn chain e6 and d5.",
                    "The Slav Defence supports d5 with the c-pawn, keeping the light-squared bishop free to develop.",
                    "The Nimzo-Indian pins the knight on c3 with the bishop and often gives White doubled pawns in return for the bishop pair.",
                    "In the Grünfeld Black allows White a big pawn centre and then attacks it with pieces and the c5 break.",
                    "The King's Indian Defence lets White build a broad centre while Black prepares a kingside pawn storm.",
                    "The London System, with an early Bf4, is popular with club players because the same set-up works against almost everything.",
                    "Positions with an isolated queen's pawn give active piece play to its owner but a long-term weakness to defend.",
                ),
                tips=(
                    "Learn the typical pawn structures before the move orders.",
                    "Decide on one defence to 1.d4 and one to the London.",
                    "Practise isolated queen's pawn middlegames from both sides.",
                    "Watch for the c5 and e5 breaks.",
                    "Review your games against 1.d4 after every tournament.",
                ),
                queries=(
                    "is the london system good for club players",
                    "how to play against the queens gambit as black",
                    "what is the idea of the nimzo indian",
                ),
            ),
        ),
        palette=((30, 30, 30), (210, 190, 150), (250, 250, 245)),
    ),
    Topic(
        key="japanese_cooking",
        name="Japanese Home Cooking",
        phrase="Japanese home cooking",
        description=(
            "Everyday Japanese cooking at home: building flavour with dashi, cooking perfect rice "
            "and mastering simple grilling and simmering techniques."
        ),
        capsule_titles=("Japanese Cooking at Home", "The Everyday Japanese Kitchen"),
        terms=("Japanese cuisine", "umami", "soy sauce", "mirin", "seasonal ingredients", "ichiju sansai", "washoku"),
        facts=(
            "A traditional Japanese meal follows the pattern ichiju sansai: one soup and three side dishes served with rice.",
            "Umami, the savoury fifth taste, was identified by the chemist Kikunae Ikeda in 1908 while studying kombu broth.",
            "Soy sauce, mirin, sake, miso and rice vinegar form the core seasonings of most home kitchens.",
            "Japanese cooking places great value on seasonal ingredients, known as shun, eaten at their peak.",
            "Presentation matters: dishes are usually served in small portions on plates chosen to suit the food and the season.",
            "Many everyday dishes take less than thirty minutes once a few basic preparations are in place.",
            "Washoku, traditional Japanese dietary culture, was added to UNESCO's list of intangible cultural heritage in 2013.",
        ),
        queries=(
            "easy japanese recipes to cook at home",
            "basics of japanese cooking",
            "what do i need to start cooking japanese food",
        ),
        facets=(
            Facet(
                key="dashi",
                name="Dashi and Soups",
                headings=("Making Dashi", "Miso Soup", "Building Umami"),
                terms=("dashi", "kombu", "katsuobushi", "niboshi", "miso soup", "awase dashi", "dried shiitake", "glutamate", "inosinate"),
                facts=(
                    "Dashi is the basic stock of Japanese cooking, most often made from kombu seaweed and katsuobushi, dried smoked bonito flakes.",
                    "Kombu should be steeped gently and removed before the water boils, otherwise the stock turns slimy and bitter.",
                    "Awase dashi combines kombu and katsuobushi because glutamate and inosinate together taste far more savoury than either alone.",
                    "Dried shiitake mushrooms and kombu make a vegetarian dashi with deep flavour.",
                    "Niboshi, small dried sardines, give a stronger, more rustic dashi often used for miso soup and noodle broths.",
                    "Miso should be dissolved into the soup at the end and never boiled, to preserve its aroma.",
                    "A second, weaker stock called niban dashi can be made from the used kombu and bonito for simmered dishes.",
                    "Instant dashi granules are widely used in Japanese homes, and there is no shame in keeping a jar for busy days.",
                ),
                tips=(
                    "Soak kombu in cold water overnight for an easy dashi.",
                    "Take the pot off the heat before adding miso.",
                    "Keep a jar of dashi granules for weeknights.",
                    "Freeze leftover dashi in ice cube trays.",
                    "Save used kombu for a second stock.",
                ),
                queries=(
                    "how to make dashi without bonito",
                    "why is my miso soup bitter",
                    "can i use instant dashi",
                ),
            ),
            Facet(
                key="rice",
                name="Rice and Sushi",
                headings=("Cooking Japanese Rice", "Seasoning Sushi Rice", "Onigiri and Rice Bowls"),
                terms=("short-grain rice", "the rice cooker", "rinsing", "sushi rice", "rice vinegar", "onigiri", "nori", "donburi", "the hangiri"),
                facts=(
                    "Japanese short-grain rice is rinsed several times until the water runs almost clear, removing surface starch that would make it gluey.",
                    "Soaking rice for 30 minutes before cooking lets the grains absorb water evenly.",
                    "A common ratio is about 1.1 to 1.2 parts water to one part rice by volume, slightly less for sushi rice.",
                    "Sushi rice is seasoned with rice vinegar, sugar and salt while it is still hot, then cooled quickly by fanning.",
                    "A wooden tub called a hangiri absorbs excess moisture from sushi rice as it is mixed.",
                    "Onigiri, rice balls wrapped in nori, are shaped with wet, salted hands so the rice does not stick.",
                    "Donburi dishes such as oyakodon are simply rice bowls topped with simmered or fried ingredients.",
                    "Letting rice rest for ten minutes after cooking finishes the steaming and evens out the texture.",
                ),
                tips=(
                    "Rinse rice until the water is nearly clear.",
                    "Soak for half an hour before cooking.",
                    "Season sushi rice while it is still hot.",
                    "Wet and salt your hands before shaping onigiri.",
                    "Let cooked rice rest with the lid on.",
                ),
                queries=(
                    "how much water for japanese rice",
                    "how to season rice for sushi",
                    "rice balls falling apart",
                ),
            ),
            Facet(
                key="techniques",
                name="Grilling and Simmering",
                headings=("Yakitori and Teriyaki", "Nimono: Simmered Dishes", "Tempura Basics"),
                terms=("teriyaki", "yakitori", "tare", "nimono", "the otoshibuta", "tempura", "tempura batter", "simmering", "binchotan"),
                facts=(
                    "Teriyaki means glossy grilling: the glaze of soy sauce, mirin, sake and sugar is brushed on near the end so it does not burn.",
                    "Yakitori are skewers of chicken grilled over charcoal and seasoned either with salt or with a sweet soy tare.",
                    "Binchotan charcoal burns hot and clean with little smoke, which is why yakitori restaurants prize it.",
                    "Nimono are dishes simmered gently in seasoned dashi until the ingredients absorb the flavour.",
                    "An otoshibuta, a drop lid that sits directly on the food, keeps simmering ingredients submerged and stops them tumbling apart.",
                    "Tempura batter should be mixed with ice-cold water and left lumpy, since overmixing develops gluten and makes it heavy.",
                    "Frying tempura in small batches keeps the oil temperature near 170 to 180 °C for a light, crisp coating.",
                    "Simmered dishes often taste better the next day, once the ingredients have cooled in their broth.",
                ),
                tips=(
                    "Brush on teriyaki glaze only in the last minutes.",
                    "Cut a drop lid from baking paper if you have no otoshibuta.",
                    "Keep tempura batter cold and lumpy.",
                    "Fry in small batches to hold the oil temperature.",
                    "Make simmered dishes a day ahead.",
                ),
                queries=(
                    "homemade teriyaki sauce ratio",
                    "how to keep tempura crispy",
                    "what is a drop lid for",
                ),
            ),
        ),
        palette=((190, 30, 45), (40, 40, 40), (250, 245, 235)),
    ),
)

TOPICS: dict[str, Topic] = {topic.key: topic for topic in _TOPIC_LIST}
